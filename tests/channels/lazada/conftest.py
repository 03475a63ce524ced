"""A Lazada sandbox per test, reached through ``httpx.ASGITransport``, on a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from agrimarket.channels.base import ImageRef, ListingDraft, VariantDraft
from agrimarket.channels.lazada import LazadaAdapter, LazadaPlugin
from agrimarket.sandbox.lazada import LazadaSandbox
from tests.channels.support import FakeClock, asgi_client, connect_adapter, generous_config, listing, variant

BASE = "http://lazada.test"
SETTINGS = {"api_url": f"{BASE}/rest", "auth_url": f"{BASE}/auth", "primary_category": 10_001}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sandbox(clock: FakeClock) -> LazadaSandbox:
    return LazadaSandbox(generous_config(), clock=clock)


@pytest.fixture
async def http(sandbox: LazadaSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(sandbox.app, BASE) as client:
        yield client


@pytest.fixture
def shop(sandbox: LazadaSandbox) -> dict[str, Any]:
    return sandbox.add_shop("Vườn cam Cao Phong")


def connect(
    credentials: dict[str, Any],
    http: httpx.AsyncClient,
    clock: FakeClock,
    settings: dict[str, Any] | None = None,
) -> LazadaAdapter:
    settings = settings if settings is not None else SETTINGS
    return connect_adapter(LazadaPlugin(clock=clock), LazadaAdapter, credentials, http, settings)


@pytest.fixture
def adapter(shop: dict[str, Any], http: httpx.AsyncClient, clock: FakeClock) -> LazadaAdapter:
    return connect(shop, http, clock)


def draft(*variants: VariantDraft, images: tuple[ImageRef, ...] = (), **changes: Any) -> ListingDraft:
    sample = {
        "title": "Cam Cao Phong loại 1",
        "description": "Cam ngọt, mọng nước.\nThu hoạch trong ngày.",
        "variants": variants or (variant("CAM-1KG", "Hộp 1 kg"),),
        "images": images,
    }
    return listing(sample, **changes)
