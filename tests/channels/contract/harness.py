"""What the adapter contract suite needs of each marketplace: a fresh sandbox with one authorised shop, the adapter
for it, and the few sandbox handles a test steers by (a buyer's order, the push it sent, the stock shown).

A new channel joins the suite by adding a :class:`Harness` to ``HARNESSES``; every test in ``test_contract.py``
then runs against it unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

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


def shopee() -> Platform:
    pushes = PushReceiver()
    to_us = httpx.AsyncClient(transport=httpx.ASGITransport(app=pushes.app()))
    sandbox = ShopeeSandbox(_config(), http=to_us)
    to_sandbox = httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox.app))
    credentials: dict[str, object] = dict(sandbox.add_shop("Vườn sầu riêng Bình Phước"))
    shop_id = str(credentials["shop_id"])
    settings: dict[str, object] = {"base_url": "http://shopee.test", "variation_delay_seconds": 0}
    plugin = ShopeePlugin()
    info = _info("shopee", shop_id, credentials, settings)
    assert info.callback_url is not None
    sandbox.set_callback(shop_id, info.callback_url)

    async def buy(seller_sku: str, quantity: int) -> str:
        return await sandbox.place_order(shop_id, [(seller_sku, quantity)])

    def rebuild(new_credentials: dict[str, object]) -> ChannelAdapter:
        return plugin.adapter(_info("shopee", shop_id, new_credentials, settings), to_sandbox)

    return Platform(
        "shopee",
        plugin,
        plugin.adapter(info, to_sandbox),
        sandbox.market,
        shop_id,
        pushes,
        info.callback_url,
        buy,
        [to_us, to_sandbox],
        rebuild,
    )


def lazada() -> Platform:
    pushes = PushReceiver()
    to_us = httpx.AsyncClient(transport=httpx.ASGITransport(app=pushes.app()))
    sandbox = LazadaSandbox(_config(), http=to_us)
    to_sandbox = httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox.app))
    credentials: dict[str, object] = dict(sandbox.add_shop("Vườn sầu riêng Bình Phước"))
    shop_id = str(credentials["seller_id"])
    settings: dict[str, object] = {
        "api_url": "http://lazada.test/rest",
        "auth_url": "http://lazada.test/auth",
        "primary_category": 10000476,
    }
    plugin = LazadaPlugin()
    info = _info("lazada", shop_id, credentials, settings)
    assert info.callback_url is not None
    sandbox.set_callback(shop_id, info.callback_url)

    async def buy(seller_sku: str, quantity: int) -> str:
        return (await sandbox.place_order(shop_id, [(seller_sku, quantity)])).order_id

    def rebuild(new_credentials: dict[str, object]) -> ChannelAdapter:
        return plugin.adapter(_info("lazada", shop_id, new_credentials, settings), to_sandbox)

    return Platform(
        "lazada",
        plugin,
        plugin.adapter(info, to_sandbox),
        sandbox.market,
        shop_id,
        pushes,
        info.callback_url,
        buy,
        [to_us, to_sandbox],
        rebuild,
    )


def tiktok() -> Platform:
    pushes = PushReceiver()
    to_us = httpx.AsyncClient(transport=httpx.ASGITransport(app=pushes.app()))
    sandbox = TikTokSandbox(_config(), http=to_us)
    to_sandbox = httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox.app))
    credentials: dict[str, object] = dict(sandbox.add_shop("Vườn sầu riêng Bình Phước"))
    shop_id = str(credentials["shop_id"])
    settings: dict[str, object] = {"api_url": "http://tiktok.test", "auth_url": "http://tiktok.test/auth"}
    plugin = TikTokPlugin()
    info = _info("tiktok", shop_id, credentials, settings)
    assert info.callback_url is not None
    sandbox.set_callback(shop_id, info.callback_url)

    async def buy(seller_sku: str, quantity: int) -> str:
        return await sandbox.place_order(shop_id, [(seller_sku, quantity)])

    def rebuild(new_credentials: dict[str, object]) -> ChannelAdapter:
        return plugin.adapter(_info("tiktok", shop_id, new_credentials, settings), to_sandbox)

    return Platform(
        "tiktok",
        plugin,
        plugin.adapter(info, to_sandbox),
        sandbox.market,
        shop_id,
        pushes,
        info.callback_url,
        buy,
        [to_us, to_sandbox],
        rebuild,
    )


def tiki() -> Platform:
    """Tiki reviews every product request; here its reviews approve at once (``review_seconds=0``), so a publish is
    live with its ids as on the other channels (the review itself has its own tests). Tiki pushes nothing: its
    events are pulled, so ``pushes`` stays empty."""
    pushes = PushReceiver()
    sandbox = TikiSandbox(_config(), review_seconds=0)
    to_sandbox = httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox.app))
    credentials: dict[str, object] = dict(sandbox.add_shop("Vườn sầu riêng Bình Phước"))
    shop_id = str(credentials["seller_id"])
    settings: dict[str, object] = {
        "api_url": "http://tiki.test",
        "auth_url": "http://tiki.test/sc/oauth2",
        "category_id": 8322,
    }
    plugin = TikiPlugin()
    info = _info("tiki", shop_id, credentials, settings)
    assert info.callback_url is not None

    async def buy(seller_sku: str, quantity: int) -> str:
        return await sandbox.place_order(shop_id, [(seller_sku, quantity)])

    def rebuild(new_credentials: dict[str, object]) -> ChannelAdapter:
        return plugin.adapter(_info("tiki", shop_id, new_credentials, settings), to_sandbox)

    return Platform(
        "tiki",
        plugin,
        plugin.adapter(info, to_sandbox),
        sandbox.market,
        shop_id,
        pushes,
        info.callback_url,
        buy,
        [to_sandbox],
        rebuild,
    )


Harness = Callable[[], Platform]
HARNESSES: dict[str, Harness] = {"shopee": shopee, "lazada": lazada, "tiktok": tiktok, "tiki": tiki}
