"""What the adapter contract suite needs of each marketplace: a fresh sandbox with one authorised shop, the adapter
for it, and the few sandbox handles a test steers by (a buyer's order, the push it sent, the stock shown).

A new channel joins the suite by adding a :class:`Harness` to ``HARNESSES``; every test in ``test_contract.py``
then runs against it unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from starlette.applications import Starlette

from agrimarket.channels.base import ChannelAdapter, ChannelPlugin, ConnectionInfo
from agrimarket.channels.lazada import LazadaPlugin
from agrimarket.channels.shopee import ShopeePlugin
from agrimarket.channels.tiki import TikiPlugin
from agrimarket.channels.tiktok import TikTokPlugin
from agrimarket.sandbox.core import Marketplace, SandboxConfig
from agrimarket.sandbox.lazada import LazadaSandbox
from agrimarket.sandbox.shopee import ShopeeSandbox
from agrimarket.sandbox.tiki import TikiSandbox
from agrimarket.sandbox.tiktok import TikTokSandbox
from tests.channels.support import PushReceiver

CALLBACK_URL = "https://agrimarket.test/webhooks/{channel}/{connection_id}"


@dataclass
class Platform:
    """One authorised shop on a fresh sandbox, and its adapter."""

    channel: str
    plugin: ChannelPlugin
    adapter: ChannelAdapter
    market: Marketplace
    shop_id: str
    pushes: PushReceiver
    callback_url: str
    buy: Callable[[str, int], Awaitable[str]]  # (seller SKU, quantity) → the platform's order id
    clients: list[httpx.AsyncClient]
    # Build the adapter again from credentials (after a refresh)
    rebuild: Callable[[dict[str, object]], ChannelAdapter]

    def stock(self, seller_sku: str) -> int:
        found = self.market.shops[self.shop_id].by_seller_sku(seller_sku)
        assert found is not None, f"{seller_sku} is not on the {self.channel} shop"
        return found[1].stock

    def price(self, seller_sku: str) -> int:
        found = self.market.shops[self.shop_id].by_seller_sku(seller_sku)
        assert found is not None, f"{seller_sku} is not on the {self.channel} shop"
        return found[1].price_vnd

    def expire_token(self) -> None:
        self.market.expire_access_token(self.shop_id)

    async def aclose(self) -> None:
        await self.market.drain()
        for client in self.clients:
            await client.aclose()


def _config() -> SandboxConfig:
    return SandboxConfig(rate_calls=10_000, burst=10_000)


def _info(channel: str, shop_id: str, credentials: dict[str, object], settings: dict[str, object]) -> ConnectionInfo:
    connection_id = uuid.uuid4()
    return ConnectionInfo(
        connection_id=connection_id,
        organization_id=uuid.uuid4(),
        external_shop_id=shop_id,
        credentials=credentials,
        settings=settings,
        callback_url=CALLBACK_URL.format(channel=channel, connection_id=connection_id),
    )


class _Sandbox(Protocol):
    """What the suite uses of every marketplace sandbox."""

    @property
    def app(self) -> Starlette: ...

    @property
    def market(self) -> Marketplace: ...

    def add_shop(self, name: str, /) -> Mapping[str, Any]: ...

    async def place_order(self, shop_id: str, lines: Sequence[tuple[str, int]], /) -> Any: ...


def _platform(
    channel: str,
    sandbox: _Sandbox,
    plugin: ChannelPlugin,
    shop_key: str,
    settings: dict[str, object],
    *,
    pushes: PushReceiver,
    clients: list[httpx.AsyncClient],
    set_callback: Callable[[str, str | None], None] | None = None,
    order_id: Callable[[Any], str] = str,
) -> Platform:
    """One shop on ``sandbox``, its id the credentials' ``shop_key``; pushes (where ``set_callback`` is given) to its
    connection's callback URL; a buyer's order named by ``order_id`` of what ``place_order`` returns."""
    to_sandbox = httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox.app))
    credentials: dict[str, object] = dict(sandbox.add_shop("Vườn sầu riêng Bình Phước"))
    shop_id = str(credentials[shop_key])
    info = _info(channel, shop_id, credentials, settings)
    assert info.callback_url is not None
    if set_callback is not None:
        set_callback(shop_id, info.callback_url)

    async def buy(seller_sku: str, quantity: int) -> str:
        return order_id(await sandbox.place_order(shop_id, [(seller_sku, quantity)]))

    def rebuild(new_credentials: dict[str, object]) -> ChannelAdapter:
        return plugin.adapter(_info(channel, shop_id, new_credentials, settings), to_sandbox)

    return Platform(
        channel,
        plugin,
        plugin.adapter(info, to_sandbox),
        sandbox.market,
        shop_id,
        pushes,
        info.callback_url,
        buy,
        [*clients, to_sandbox],
        rebuild,
    )


def _receiver() -> tuple[PushReceiver, httpx.AsyncClient]:
    """Our callback URL, and the client a sandbox pushes to it with."""
    pushes = PushReceiver()
    return pushes, httpx.AsyncClient(transport=httpx.ASGITransport(app=pushes.app()))


def shopee() -> Platform:
    pushes, to_us = _receiver()
    sandbox = ShopeeSandbox(_config(), http=to_us)
    settings: dict[str, object] = {"base_url": "http://shopee.test", "variation_delay_seconds": 0}
    return _platform(
        "shopee",
        sandbox,
        ShopeePlugin(),
        "shop_id",
        settings,
        pushes=pushes,
        clients=[to_us],
        set_callback=sandbox.set_callback,
    )


def lazada() -> Platform:
    pushes, to_us = _receiver()
    sandbox = LazadaSandbox(_config(), http=to_us)
    settings: dict[str, object] = {
        "api_url": "http://lazada.test/rest",
        "auth_url": "http://lazada.test/auth",
        "primary_category": 10000476,
    }
    return _platform(
        "lazada",
        sandbox,
        LazadaPlugin(),
        "seller_id",
        settings,
        pushes=pushes,
        clients=[to_us],
        set_callback=sandbox.set_callback,
        order_id=lambda order: order.order_id,
    )


def tiktok() -> Platform:
    pushes, to_us = _receiver()
    sandbox = TikTokSandbox(_config(), http=to_us)
    settings: dict[str, object] = {"api_url": "http://tiktok.test", "auth_url": "http://tiktok.test/auth"}
    return _platform(
        "tiktok",
        sandbox,
        TikTokPlugin(),
        "shop_id",
        settings,
        pushes=pushes,
        clients=[to_us],
        set_callback=sandbox.set_callback,
    )


def tiki() -> Platform:
    """Tiki reviews every product request; here its reviews approve at once (``review_seconds=0``), so a publish is
    live with its ids as on the other channels (the review itself has its own tests). Tiki pushes nothing: its
    events are pulled, so ``pushes`` stays empty."""
    settings: dict[str, object] = {
        "api_url": "http://tiki.test",
        "auth_url": "http://tiki.test/sc/oauth2",
        "category_id": 8322,
    }
    sandbox = TikiSandbox(_config(), review_seconds=0)
    return _platform("tiki", sandbox, TikiPlugin(), "seller_id", settings, pushes=PushReceiver(), clients=[])


Harness = Callable[[], Platform]
HARNESSES: dict[str, Harness] = {"shopee": shopee, "lazada": lazada, "tiktok": tiktok, "tiki": tiki}
