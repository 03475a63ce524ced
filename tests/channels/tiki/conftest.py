"""A Tiki sandbox per test, reached through ``httpx.ASGITransport``, on a clock the test moves."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image

from agrimarket.channels.base import ConnectionInfo, ImageRef, ListingDraft, VariantDraft
from agrimarket.channels.tiki import TikiAdapter, TikiPlugin
from agrimarket.sandbox.core import SandboxConfig
from agrimarket.sandbox.tiki import TikiSandbox

BASE = "http://tiki.test"
SETTINGS: dict[str, Any] = {"api_url": BASE, "auth_url": f"{BASE}/sc/oauth2", "category_id": 8322}


class FakeClock:
    def __init__(self, now: float = 1_717_200_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sandbox(clock: FakeClock) -> TikiSandbox:
    # Reviews wait for the test's approve()/reject(); a generous rate limit, so only the throttling tests meet it.
    return TikiSandbox(SandboxConfig(rate_calls=10_000, burst=10_000, timeout_seconds=0.01), clock=clock)


@pytest.fixture
async def http(sandbox: TikiSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(sandbox.app), base_url=BASE) as client:
        yield client


@pytest.fixture
def shop(sandbox: TikiSandbox) -> dict[str, Any]:
    return sandbox.add_shop("Vườn bưởi Phúc Trạch")


def connect(
    credentials: dict[str, Any], http: httpx.AsyncClient, clock: FakeClock, plugin: TikiPlugin | None = None
) -> TikiAdapter:
    plugin = plugin or TikiPlugin(clock=clock)
    connection = ConnectionInfo(
        connection_id=uuid.uuid4(),
        organization_id=uuid.uuid4(),
        external_shop_id=plugin.shop_id(credentials),
        credentials=credentials,
        settings=SETTINGS,
    )
    adapter = plugin.adapter(connection, http)
    assert isinstance(adapter, TikiAdapter)
    return adapter


@pytest.fixture
def adapter(shop: dict[str, Any], http: httpx.AsyncClient, clock: FakeClock) -> TikiAdapter:
    return connect(shop, http, clock)


def jpeg(color: tuple[int, int, int], side: int = 600) -> ImageRef:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), color).save(buffer, "JPEG")
    return ImageRef(f"h{color[0]}-{color[1]}-{color[2]}", "image/jpeg", side, side, buffer.getvalue())


def variant(sku: str, name: str, price: int = 85_000, stock: int = 10) -> VariantDraft:
    return VariantDraft(sku=sku, name=name, price_vnd=price, stock=stock, weight_grams=1500, unit="quả")


def draft(*variants: VariantDraft, **changes: Any) -> ListingDraft:
    values: dict[str, Any] = {
        "product_id": uuid.uuid4(),
        "title": "Bưởi Phúc Trạch",
        "description": "Bưởi ngọt, tép giòn.\nHái trong ngày.",
        "variants": variants or (variant("BUOI-1", "1 quả"),),
        "images": (jpeg((230, 200, 60)),),
        **changes,
    }
    return ListingDraft(**values)
