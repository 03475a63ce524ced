"""The demo's storefront: the demo cooperative's products on ``/shop/binh-phuoc``, paid through the local fake of the
Stripe API mounted at ``/sandbox/stripe`` when no Stripe keys are set (the pages say TEST MODE), or through Stripe's
own test mode with test keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from agrimarket.config import Settings
from agrimarket.demo.seed import ShopToConnect, seed
from agrimarket.observability import get_logger
from agrimarket.payments.gateway import DEMO_API_KEY, FAKE_PATH, stripe_config
from agrimarket.sandbox.stripe import StripeFake

log = get_logger(__name__)

DEMO_SLUG = "binh-phuoc"
DEMO_STOREFRONT = "Nông sản Bình Phước – cửa hàng"
WEBHOOK_PATH = "/webhooks/stripe"


def install(app: FastAPI, settings: Settings) -> list[Any]:
    """Mount the fake of the Stripe API if it is the one in force; the companion that connects the storefront."""
    config = stripe_config(settings)
    fake: StripeFake | None = None
    if config is not None and config.fake:
        fake = StripeFake(api_key=DEMO_API_KEY, public_base=config.api_base, delivery="background")
        app.mount(FAKE_PATH, fake.app)
        app.state.stripe_fake = fake

    @asynccontextmanager
    async def storefront(app: FastAPI) -> AsyncIterator[None]:
        public_url = settings.public_url or f"http://127.0.0.1:{settings.port}"
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=public_url) as client:
            await seed(client, [ShopToConnect("storefront", DEMO_STOREFRONT, {"slug": DEMO_SLUG})])
            if fake is not None and config is not None and config.webhook_secret:
                # The fake tells our webhook of payments in process, signed as Stripe signs them.
                fake.http = client
                fake.add_endpoint(f"{public_url}{WEBHOOK_PATH}", config.webhook_secret)
            mode = "live" if config is not None and not config.test_mode else "test mode"
            log.info("demo_storefront", page=f"{public_url}/shop/{DEMO_SLUG}", stripe="fake" if fake else mode)
            try:
                yield
            finally:
                if fake is not None:
                    await fake.drain()

    return [storefront]
