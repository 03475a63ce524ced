"""The embedded default as a demo: the Shopee, Lazada, TikTok Shop and Tiki sandboxes mounted inside the server,
and a demo cooperative with Vietnamese products and photos connected and published to one shop on each, so a
newcomer watches listings appear on the sandbox shops' pages within seconds of ``make run``.

On by default in development (``AGRIMARKET_DEMO``); never in production. The sandboxes keep their shops in
``<data_dir>/sandbox-<name>.json`` so a restart finds the items AgriMarket published there.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx
from fastapi import FastAPI

from agrimarket.channels.shop import webhook_path
from agrimarket.config import Settings
from agrimarket.demo.seed import DEMO_PASSWORD, DEMO_PHONE, ShopToConnect, seed
from agrimarket.observability import get_logger
from agrimarket.sandbox.core import Marketplace, SandboxConfig
from agrimarket.sandbox.lazada import LazadaSandbox
from agrimarket.sandbox.shopee import ShopeeSandbox
from agrimarket.sandbox.tiki import TikiSandbox
from agrimarket.sandbox.tiktok import TikTokSandbox

log = get_logger(__name__)

SAVE_EVERY_SECONDS = 5.0
DEMO_LATENCY_SECONDS = 0.05  # a marketplace is never instant; the demo shows the engine working with that


class Sandbox(Protocol):
    market: Marketplace

    def add_shop(self, name: str) -> dict[str, Any]: ...

    def credentials(self, shop_id: str) -> dict[str, Any]: ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...


@runtime_checkable
class Pushing(Protocol):
    def set_callback(self, shop_id: str, url: str | None) -> None: ...


@dataclass
class DemoShop:
    channel: str
    prefix: str  # where the sandbox is mounted
    sandbox: Sandbox
    shop_name: str

    def state_file(self, data_dir: Path) -> Path:
        return data_dir / f"sandbox-{self.channel}.json"


def demo_shops() -> list[DemoShop]:
    config = SandboxConfig(latency_seconds=DEMO_LATENCY_SECONDS)
    shopee = ShopeeSandbox(SandboxConfig(**vars(config)))
    lazada = LazadaSandbox(SandboxConfig(**vars(config)))
    tiktok = TikTokSandbox(SandboxConfig(**vars(config)))
    # Tiki reviews every new product; the demo's Tiki approves at once so the listings go live within seconds.
    tiki = TikiSandbox(SandboxConfig(**vars(config)), review_seconds=0)
    return [
        DemoShop("shopee", "/sandbox/shopee", shopee, "Nông sản Bình Phước – Shopee"),
        DemoShop("lazada", "/sandbox/lazada", lazada, "Nông sản Bình Phước – Lazada"),
        DemoShop("tiktok", "/sandbox/tiktok", tiktok, "Nông sản Bình Phước – TikTok Shop"),
        DemoShop("tiki", "/sandbox/tiki", tiki, "Nông sản Bình Phước – Tiki"),
    ]


# Our categories → the platform's category ids, as a seller picks them once per shop. The ids are illustrative:
# the sandboxes accept any id, and a real shop's ids come from get_category / category/tree/get.
CATEGORY_MAPS = {
    "shopee": {"nuts": "100632", "spices": "100633", "fruit": "100629", "coffee": "100635", "honey": "100637"},
    "lazada": {
        "nuts": "10000481",
        "spices": "10000483",
        "fruit": "10000476",
        "coffee": "10000490",
        "honey": "10000488",
    },
    "tiktok": {"nuts": "600011", "spices": "600012", "fruit": "600001", "coffee": "600015", "honey": "600017"},
    "tiki": {"nuts": "8322", "spices": "8323", "fruit": "8319", "coffee": "8325", "honey": "8327"},
}


def _shop_settings(shop: DemoShop, base: str) -> dict[str, Any]:
    if shop.channel == "shopee":
        # The sandbox does not hold us to the 5 s Shopee's guide asks between add_item and init_tier_variation.
        return {"base_url": base, "variation_delay_seconds": 0}
    if shop.channel == "lazada":
        return {"api_url": f"{base}/rest", "auth_url": f"{base}/auth"}
    if shop.channel == "tiktok":
        return {"api_url": base, "auth_url": f"{base}/auth", "services_url": f"{base}/services"}
    return {"api_url": base, "auth_url": f"{base}/sc/oauth2"}


def shop_page(shop: DemoShop, public_url: str, shop_id: str) -> str:
    return f"{public_url}{shop.prefix}/sandbox/shops/{shop_id}"


def _restore(shop: DemoShop, data_dir: Path) -> None:
    path = shop.state_file(data_dir)
    if path.is_file():
        try:
            shop.sandbox.restore(path.read_bytes())
        except ValueError:
            log.warning("demo_sandbox_state_unreadable", path=str(path))


def _save(shop: DemoShop, data_dir: Path) -> None:
    path = shop.state_file(data_dir)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(shop.sandbox.snapshot())
    os.replace(temporary, path)


def _the_shop(shop: DemoShop) -> str:
    """The demo's shop on this sandbox: the one kept from last time, or a new one."""
    for shop_id, found in shop.sandbox.market.shops.items():
        if found.name == shop.shop_name:
            return shop_id
    return _shop_id(shop.sandbox.add_shop(shop.shop_name))


def _shop_id(credentials: dict[str, Any]) -> str:
    return str(credentials.get("shop_id") or credentials.get("seller_id"))


def install(app: FastAPI, settings: Settings) -> list[Any]:
    """Mount the sandboxes on ``app``; the companions that restore, seed, save and stop them."""
    shops = demo_shops()
    data_dir = settings.data_dir
    for shop in shops:
        _restore(shop, data_dir)
        app.mount(shop.prefix, shop.sandbox.app)  # type: ignore[attr-defined]
    app.state.sandboxes = {shop.channel: shop.sandbox for shop in shops}

    @asynccontextmanager
    async def demo(app: FastAPI) -> AsyncIterator[None]:
        public_url = settings.public_url or f"http://127.0.0.1:{settings.port}"
        to_connect: list[ShopToConnect] = []
        for shop in shops:
            shop_id = _the_shop(shop)
            to_connect.append(
                ShopToConnect(
                    channel=shop.channel,
                    name=shop.shop_name,
                    credentials=shop.sandbox.credentials(shop_id),
                    settings=_shop_settings(shop, f"{public_url}{shop.prefix}"),
                    category_map=CATEGORY_MAPS[shop.channel],
                )
            )
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=public_url) as client:
            seeded = await seed(client, to_connect)
        for shop, connect in zip(shops, to_connect, strict=True):
            shop_id = _shop_id(connect.credentials)
            # A buyer's order on the sandbox page comes back to us as a signed push, like the real platform's
            # (Tiki pushes nothing: its orders are pulled from its event queue).
            connection_id = seeded.connection_ids[shop.shop_name]
            if isinstance(shop.sandbox, Pushing):
                url = f"{public_url}{webhook_path(shop.channel, uuid.UUID(connection_id))}"
                shop.sandbox.set_callback(shop_id, url)
            log.info("demo_shop", channel=shop.channel, page=shop_page(shop, public_url, shop_id))
        log.info("demo_login", phone=DEMO_PHONE, password=DEMO_PASSWORD, docs=f"{public_url}/docs")

        async def keep() -> None:
            while True:
                await asyncio.sleep(SAVE_EVERY_SECONDS)
                for shop in shops:
                    await asyncio.to_thread(_save, shop, data_dir)

        saver = asyncio.create_task(keep(), name="demo sandbox saver")
        try:
            yield
        finally:
            saver.cancel()
            with suppress(asyncio.CancelledError):
                await saver
            for shop in shops:
                await shop.sandbox.market.drain()
                _save(shop, data_dir)

    return [demo]
