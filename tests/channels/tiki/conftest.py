"""A Tiki sandbox per test, reached through ``httpx.ASGITransport``, on a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from agrimarket.channels.base import ListingDraft, VariantDraft
from agrimarket.channels.tiki import TikiAdapter, TikiPlugin
from agrimarket.sandbox.tiki import TikiSandbox
from tests.channels import support
from tests.channels.support import FakeClock, asgi_client, connect_adapter, generous_config, jpeg, listing

BASE = "http://tiki.test"
SETTINGS: dict[str, Any] = {"api_url": BASE, "auth_url": f"{BASE}/sc/oauth2", "category_id": 8322}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sandbox(clock: FakeClock) -> TikiSandbox:
    # Reviews wait for the test's approve()/reject().
    return TikiSandbox(generous_config(), clock=clock)


@pytest.fixture
async def http(sandbox: TikiSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(sandbox.app, BASE) as client:
        yield client


@pytest.fixture
def shop(sandbox: TikiSandbox) -> dict[str, Any]:
    return sandbox.add_shop("Vườn bưởi Phúc Trạch")


def connect(
    credentials: dict[str, Any], http: httpx.AsyncClient, clock: FakeClock, plugin: TikiPlugin | None = None
) -> TikiAdapter:
    return connect_adapter(plugin or TikiPlugin(clock=clock), TikiAdapter, credentials, http, SETTINGS)


@pytest.fixture
def adapter(shop: dict[str, Any], http: httpx.AsyncClient, clock: FakeClock) -> TikiAdapter:
    return connect(shop, http, clock)


def variant(sku: str, name: str, price: int = 85_000, stock: int = 10) -> VariantDraft:
    return support.variant(sku, name, price, stock, weight_grams=1500, unit="quả")


def draft(*variants: VariantDraft, **changes: Any) -> ListingDraft:
    sample = {
        "title": "Bưởi Phúc Trạch",
        "description": "Bưởi ngọt, tép giòn.\nHái trong ngày.",
        "variants": variants or (variant("BUOI-1", "1 quả"),),
        "images": (jpeg((230, 200, 60)),),
    }
    return listing(sample, **changes)
