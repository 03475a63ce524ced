"""The Shopee adapter against its sandbox, through ``httpx.ASGITransport``, on a clock the test moves."""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agrimarket.channels.base import ConnectionInfo, ImageRef
from agrimarket.channels.shopee import ShopeeAdapter, ShopeePlugin
from agrimarket.sandbox.core import SandboxConfig
from agrimarket.sandbox.shopee import ShopeeSandbox

BASE_URL = "http://shopee.test"
CALLBACK_URL = "http://agrimarket.test/webhooks/shopee"
START = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Received:
    """Pushes the sandbox delivered to our callback URL: exact URL, headers and bytes."""

    pushes: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def received() -> Received:
    return Received()


@pytest.fixture
async def sandbox(clock: Clock, received: Received) -> AsyncIterator[ShopeeSandbox]:
    async def hook(request: Request) -> Response:
        received.pushes.append((str(request.url), dict(request.headers), await request.body()))
        return Response(status_code=204)

    receiver = Starlette(routes=[Route("/webhooks/shopee", hook, methods=["POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver)) as push_http:
        market = ShopeeSandbox(SandboxConfig(rate_calls=10_000, burst=10_000), clock=clock, http=push_http)
        yield market
        await market.market.drain()


@pytest.fixture
async def http(sandbox: ShopeeSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox.app)) as client:
        yield client


def connect(
    sandbox: ShopeeSandbox,
    http: httpx.AsyncClient,
    clock: Clock,
    credentials: Mapping[str, Any] | None = None,
    *,
    base_url: str = BASE_URL,
    **settings: Any,
) -> ShopeeAdapter:
    credentials = dict(credentials or sandbox.add_shop("Vườn sầu riêng Bình Phước"))
    info = ConnectionInfo(
        connection_id=uuid.uuid4(),
        organization_id=uuid.uuid4(),
        external_shop_id=str(credentials["shop_id"]),
        credentials=credentials,
        settings={"base_url": base_url, "variation_delay_seconds": 0, **settings},
        callback_url=CALLBACK_URL,
    )
    adapter = ShopeePlugin(clock=clock).adapter(info, http)
    assert isinstance(adapter, ShopeeAdapter)
    return adapter


def photo(colour: tuple[int, int, int] = (200, 120, 40), *, fmt: str = "JPEG") -> ImageRef:
    buffer = io.BytesIO()
    Image.new("RGB", (600, 600), colour).save(buffer, fmt)
    data = buffer.getvalue()
    return ImageRef(hashlib.sha256(data).hexdigest(), f"image/{fmt.lower()}", 600, 600, data)
