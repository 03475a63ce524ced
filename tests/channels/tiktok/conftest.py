"""A TikTok Shop sandbox per test, reached through ``httpx.ASGITransport``, on a clock the test moves."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image

from agrimarket.channels.base import ConnectionInfo, ImageRef, ListingDraft, VariantDraft
from agrimarket.channels.tiktok import TikTokAdapter, TikTokPlugin
from agrimarket.sandbox.core import SandboxConfig
from agrimarket.sandbox.tiktok import TikTokSandbox

BASE = "http://tiktok.test"
SETTINGS = {"api_url": BASE, "auth_url": f"{BASE}/auth", "services_url": f"{BASE}/services", "category_id": "600001"}


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
def sandbox(clock: FakeClock) -> TikTokSandbox:
    # Generous enough that only the throttling tests meet the rate limit.
    return TikTokSandbox(SandboxConfig(rate_calls=10_000, burst=10_000, timeout_seconds=0.01), clock=clock)


@pytest.fixture
async def http(sandbox: TikTokSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(sandbox.app), base_url=BASE) as client:
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
    plugin = TikTokPlugin(clock=clock)
    connection = ConnectionInfo(
        connection_id=uuid.uuid4(),
        organization_id=uuid.uuid4(),
        external_shop_id=plugin.shop_id(credentials),
        credentials=credentials,
        settings=settings if settings is not None else SETTINGS,
    )
    adapter = plugin.adapter(connection, http)
    assert isinstance(adapter, TikTokAdapter)
    return adapter


@pytest.fixture
def adapter(shop: dict[str, Any], http: httpx.AsyncClient, clock: FakeClock) -> TikTokAdapter:
    return connect(shop, http, clock)


def jpeg(color: tuple[int, int, int], side: int = 600) -> ImageRef:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), color).save(buffer, "JPEG")
    data = buffer.getvalue()
    return ImageRef(
        content_hash=f"h{color[0]}-{color[1]}-{color[2]}", mime_type="image/jpeg", width=side, height=side, data=data
    )


RED, GREEN = jpeg((200, 30, 30)), jpeg((30, 200, 30))


def variant(sku: str, name: str, price: int = 120_000, stock: int = 10, **changes: Any) -> VariantDraft:
    return VariantDraft(sku=sku, name=name, price_vnd=price, stock=stock, weight_grams=1000, unit="hộp", **changes)


def draft(*variants: VariantDraft, images: tuple[ImageRef, ...] = (RED,), **changes: Any) -> ListingDraft:
    fields: dict[str, Any] = {
        "product_id": uuid.uuid4(),
        "title": "Bưởi Diễn Tân Triều loại 1, hộp quà",
        "description": "Bưởi ngọt, mọng nước.\nThu hoạch trong ngày.",
        "variants": variants or (variant("BUOI-1", "1 quả"),),
        "images": images,
    }
    fields.update(changes)
    return ListingDraft(**fields)
