"""The Shopee plugin: declared capabilities, schemas, adapters, and connect-by-authorisation."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from agrimarket.channels.base import (
    AuthorizationRequest,
    BatchLimit,
    Capabilities,
    ChannelAdapter,
    ConnectionInfo,
    Feature,
    ListingLimits,
    RateLimit,
)
from agrimarket.channels.errors import ChannelError, Rejected, Retryable
from agrimarket.channels.plugin_base import PluginBase
from agrimarket.channels.shopee.adapter import ShopeeAdapter
from agrimarket.channels.shopee.auth import Clock, public_base, sign
from agrimarket.channels.shopee.client import ShopeeClient, expires_at
from agrimarket.channels.shopee.schemas import ShopeeApp, ShopeeCredentials, ShopeeSettings
from agrimarket.media.rules import SHOPEE

NAME = "shopee"
AUTH_PARTNER_PATH = "/api/v2/shop/auth_partner"
CODE_EXCHANGE_PATH = "/api/v2/auth/token/get"


def default_capabilities() -> Capabilities:
    return Capabilities(
        name=NAME,
        display_name="Shopee",
        # update_stock / update_price: one item_id, 1-50 models per call (marketplaces.md §1.3).
        stock_batch=BatchLimit(50, per_item=True),
        price_batch=BatchLimit(50, per_item=True),
        rate_limit=RateLimit(
            calls=10,
            per_seconds=1.0,
            burst=10,
            documented=False,
            source=(
                "Shopee publishes no rate limit (its spec says rate_limit [0,0,0]; per-app values live in the "
                "console, marketplaces.md §1.5): 10 calls/s per shop is our stated default."
            ),
        ),
        # VN figures are per shop and category (get_item_limit) and UNCONFIRMED; these are conservative choices:
        # 120-character names, ≤9 images, ≤50 models (documented), 3000-character descriptions.
        limits=ListingLimits(
            title_max=120,
            description_max=3000,
            images_min=1,
            images_max=9,
            variants_max=50,
            price_min_vnd=1000,
            stock_max=999_999,
            sku_max=100,
        ),
        features=frozenset(Feature),
        required_fields=frozenset({"images", "weight"}),
        # The rendition purpose the sync engine picks (``channel_images`` matches it against rendition purposes).
        image_rule=SHOPEE.purpose,
        max_in_flight=4,
    )


def _with_query(url: str, extra: Mapping[str, str]) -> str:
    """``url`` with ``extra`` in its query, replacing a parameter of the same name (the core's redirect URI already
    carries our state: it must arrive once)."""
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in extra]
    query = [*kept, *extra.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


class ShopeePlugin(PluginBase):
    """The app's partner id and key for authorisation come from ``app`` or, by default, from the environment
    (``AGRIMARKET_SHOPEE_PARTNER_ID`` / ``AGRIMARKET_SHOPEE_PARTNER_KEY``, read when needed). A shop's adapter
    uses the partner id and key stored in its credentials."""

    credentials_model = ShopeeCredentials
    settings_model = ShopeeSettings

    def __init__(
        self, *, app: ShopeeApp | None = None, clock: Clock = time.time, capabilities: Capabilities | None = None
    ) -> None:
        super().__init__(NAME, capabilities or default_capabilities())
        self._app = app
        self._clock = clock

    def adapter(self, connection: ConnectionInfo, http: httpx.AsyncClient) -> ChannelAdapter:
        return ShopeeAdapter(self._capabilities, connection, http, clock=self._clock)

    # -- connect by authorisation ------------------------------------------------------------------------------

    def _partner(self) -> tuple[int, str]:
        app = self._app or ShopeeApp()
        if app.partner_id is None or not app.partner_key:
            raise Rejected(
                "This server has no Shopee app: set AGRIMARKET_SHOPEE_PARTNER_ID and AGRIMARKET_SHOPEE_PARTNER_KEY.",
                code="app_not_configured",
            )
        return app.partner_id, app.partner_key

    def authorization_url(self, request: AuthorizationRequest) -> str:
        """Shopee's ``auth_partner`` page, public-signed. Shopee echoes no ``state`` of its own, so ours rides in the
        redirect URL's query, which Shopee keeps and appends ``code`` and ``shop_id`` to."""
        settings = ShopeeSettings.model_validate(request.settings or {})
        partner_id, partner_key = self._partner()
        timestamp = int(self._clock())
        query = {
            "partner_id": str(partner_id),
            "timestamp": str(timestamp),
            "sign": sign(partner_key, public_base(partner_id, AUTH_PARTNER_PATH, timestamp)),
            "redirect": _with_query(request.redirect_uri, {"state": request.state})
            if request.state
            else request.redirect_uri,
        }
        return f"{settings.base_url.rstrip('/')}{AUTH_PARTNER_PATH}?{urlencode(query)}"

    async def exchange_code(
        self, callback: Mapping[str, str], request: AuthorizationRequest, http: httpx.AsyncClient
    ) -> Mapping[str, Any]:
        code, shop_id = callback.get("code"), callback.get("shop_id")
        if not code or not shop_id or not shop_id.isdigit():
            raise Rejected("Shopee sent the seller back without a code and a shop id.", code="callback_invalid")
        settings = ShopeeSettings.model_validate(request.settings or {})
        partner_id, partner_key = self._partner()
        client = ShopeeClient(
            http, base_url=settings.base_url, partner_id=partner_id, partner_key=partner_key, clock=self._clock
        )
        try:
            answer = await client.call(
                "POST",
                CODE_EXCHANGE_PATH,
                json={"code": code, "shop_id": int(shop_id), "partner_id": partner_id},
                shop=False,
            )
        except Retryable:
            raise
        except ChannelError as exc:
            raise Rejected(f"Shopee refused the authorisation code: {exc.message}", code=exc.code) from exc
        credentials = ShopeeCredentials(
            partner_id=partner_id,
            partner_key=partner_key,
            shop_id=int(shop_id),
            access_token=str(answer.get("access_token") or ""),
            refresh_token=str(answer.get("refresh_token") or ""),
            access_expires_at=expires_at(self._clock(), answer.get("expire_in")),
        )
        return credentials.model_dump()
