"""The Shopee adapter against its sandbox, through ``httpx.ASGITransport``, on a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest

from agrimarket.channels.shopee import ShopeeAdapter, ShopeePlugin
from agrimarket.sandbox.core import SandboxConfig
from agrimarket.sandbox.shopee import ShopeeSandbox
from tests.channels.support import FakeClock, PushReceiver, asgi_client, connect_adapter

BASE_URL = "http://shopee.test"
CALLBACK_URL = "http://agrimarket.test/webhooks/shopee"
START = 1_700_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def received() -> PushReceiver:
    return PushReceiver()


@pytest.fixture
async def sandbox(clock: FakeClock, received: PushReceiver) -> AsyncIterator[ShopeeSandbox]:
    async with asgi_client(received.app("/webhooks/shopee", status_code=204)) as push_http:
        market = ShopeeSandbox(SandboxConfig(rate_calls=10_000, burst=10_000), clock=clock, http=push_http)
        yield market
        await market.market.drain()


@pytest.fixture
async def http(sandbox: ShopeeSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(sandbox.app) as client:
        yield client


def connect(
    sandbox: ShopeeSandbox,
    http: httpx.AsyncClient,
    clock: FakeClock,
    credentials: Mapping[str, Any] | None = None,
    *,
    base_url: str = BASE_URL,
    **settings: Any,
) -> ShopeeAdapter:
    credentials = dict(credentials or sandbox.add_shop("Vườn sầu riêng Bình Phước"))
    return connect_adapter(
        ShopeePlugin(clock=clock),
        ShopeeAdapter,
        credentials,
        http,
        {"base_url": base_url, "variation_delay_seconds": 0, **settings},
        shop_id=str(credentials["shop_id"]),
        callback_url=CALLBACK_URL,
    )
