"""A TikTok Shop sandbox per test, reached through ``httpx.ASGITransport``, on a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from agrimarket.channels.base import ImageRef, ListingDraft, VariantDraft
from agrimarket.channels.tiktok import TikTokAdapter, TikTokPlugin
from agrimarket.sandbox.tiktok import TikTokSandbox
from tests.channels.support import FakeClock, asgi_client, connect_adapter, generous_config, jpeg, listing, variant

BASE = "http://tiktok.test"
SETTINGS = {"api_url": BASE, "auth_url": f"{BASE}/auth", "services_url": f"{BASE}/services", "category_id": "600001"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sandbox(clock: FakeClock) -> TikTokSandbox:
    return TikTokSandbox(generous_config(), clock=clock)


@pytest.fixture
async def http(sandbox: TikTokSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(sandbox.app, BASE) as client:
        yield client


@pytest.fixture
def shop(sandbox: TikTokSandbox) -> dict[str, Any]:
    return sandbox.add_shop("Vườn bưởi Tân Triều")


def connect(
    credentials: dict[str, Any],
    http: httpx.AsyncClient,
    clock: FakeClock,
    settings: dict[str, Any] | None = None,
) -> TikTokAdapter:
    settings = settings if settings is not None else SETTINGS
    return connect_adapter(TikTokPlugin(clock=clock), TikTokAdapter, credentials, http, settings)


@pytest.fixture
def adapter(shop: dict[str, Any], http: httpx.AsyncClient, clock: FakeClock) -> TikTokAdapter:
    return connect(shop, http, clock)


RED, GREEN = jpeg((200, 30, 30)), jpeg((30, 200, 30))


def draft(*variants: VariantDraft, images: tuple[ImageRef, ...] = (RED,), **changes: Any) -> ListingDraft:
    sample = {
        "title": "Bưởi Diễn Tân Triều loại 1, hộp quà",
        "description": "Bưởi ngọt, mọng nước.\nThu hoạch trong ngày.",
        "variants": variants or (variant("BUOI-1", "1 quả"),),
        "images": images,
    }
    return listing(sample, **changes)
