"""The TikTok Shop plugin: declared capabilities, schemas, the adapter factory and connect-by-authorisation."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

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
from agrimarket.channels.plugin_base import AppPlugin
from agrimarket.channels.tiktok.adapter import TikTokAdapter, shop_ciphers, token_credentials
from agrimarket.channels.tiktok.client import TikTokClient, call_json
from agrimarket.channels.tiktok.schemas import TikTokApp, TikTokCredentials, TikTokSettings
from agrimarket.channels.tiktok.signing import Clock
from agrimarket.media.rules import TIKTOK

NAME = "tiktok"
AUTHORIZE_PATH = "/open/authorize"
TOKEN_PATH = "/api/v2/token/get"  # noqa: S105 - a path, not a secret

CAPABILITIES = Capabilities(
    name=NAME,
    display_name="TikTok Shop",
    # Inventory and price updates take one product and its SKUs (≤ 100 SKUs per product in VN).
    stock_batch=BatchLimit(100, per_item=True),
    price_batch=BatchLimit(100, per_item=True),
    rate_limit=RateLimit(
        calls=50,
        per_seconds=1.0,
        burst=10,
        documented=True,
        source="TikTok Shop: 50 QPS per API per (app, shop), HTTP 429 / 36009002 beyond "
        "(developer-guide rate-limits.md; marketplaces.md §3.5). We hold all of a shop's APIs to 50/s together; "
        "the burst of 10 is our choice.",
    ),
    limits=ListingLimits(
        title_min=25,  # "other regions" (VN included): 25-255 characters
        title_max=255,
        description_max=10_000,
        images_min=1,
        images_max=9,
        variants_max=100,
        price_min_vnd=1_000,  # VN minimum price: UNCONFIRMED; a thousand dong is our floor
        stock_max=99_999,
        sku_max=50,
    ),
    features=frozenset(Feature),
    required_fields=frozenset({"images"}),
    image_rule=TIKTOK.purpose,
    max_in_flight=4,
)


class TikTokPlugin(AppPlugin[TikTokApp]):
    """``app``: AgriMarket's TikTok Shop app for the authorisation flow (default: from the environment, see
    :class:`TikTokApp`); a connection's own calls use the app key and secret in its credentials."""

    credentials_model = TikTokCredentials
    settings_model = TikTokSettings
    app_missing = "AgriMarket has no TikTok Shop app configured (AGRIMARKET_TIKTOK_APP_KEY, _APP_SECRET, _SERVICE_ID)."

    def __init__(self, app: TikTokApp | None = None, *, clock: Clock = time.time) -> None:
        super().__init__(NAME, CAPABILITIES, app, TikTokApp)
        self._clock = clock

    def adapter(self, connection: ConnectionInfo, http: httpx.AsyncClient) -> ChannelAdapter:
        return TikTokAdapter(CAPABILITIES, connection, http, clock=self._clock)

    # -- connect by authorisation ----------------------------------------------------------------------------

    def authorization_url(self, request: AuthorizationRequest) -> str:
        """The seller's authorisation page for our service. TikTok sends the seller back to the redirect URL
        registered for the app in the Partner Center (not one given here: register our ``/callback/tiktok``), with
        ``code`` and the ``state`` passed here."""
        settings = TikTokSettings.model_validate(request.settings or {})
        query = {"service_id": self._configured_app().service_id, "state": request.state}
        return f"{settings.services_url.rstrip('/')}{AUTHORIZE_PATH}?{urlencode(query)}"

    async def exchange_code(
        self, callback: Mapping[str, str], request: AuthorizationRequest, http: httpx.AsyncClient
    ) -> Mapping[str, Any]:
        """``/api/v2/token/get`` with the one-time ``code``, then ``/authorization/202309/shops`` for the shop and
        its cipher (the first shop the token opens: one seller account has one shop per region)."""
        if callback.get("error"):
            raise Rejected(f"The seller did not authorise AgriMarket ({callback['error']}).", code="auth_denied")
        code = callback.get("code")
        if not code:
            raise Rejected("TikTok Shop sent the seller back without an authorisation code.", code="code_missing")
        if callback.get("state") is not None and callback["state"] != request.state:
            raise Rejected("The authorisation answer belongs to another request.", code="state_mismatch")
        app = self._configured_app()
        settings = TikTokSettings.model_validate(request.settings or {})
        token = http.build_request(
            "GET",
            settings.auth_url.rstrip("/") + TOKEN_PATH,
            params={
                "app_key": app.app_key,
                "app_secret": app.app_secret,
                "auth_code": code,
                "grant_type": "authorized_code",
            },
        )
        try:
            data = await call_json(http, token, auth=None, what=TOKEN_PATH)
            client = TikTokClient(
                http,
                base_url=settings.api_url,
                app_key=app.app_key,
                app_secret=app.app_secret,
                access_token=str(data.get("access_token") or ""),
                clock=self._clock,
            )
            shops = await shop_ciphers(client)
        except Retryable:
            raise
        except ChannelError as exc:
            raise Rejected(f"TikTok Shop refused the authorisation code: {exc.message}", code=exc.code) from exc
        shop = next((s for s in shops if s.get("id") and s.get("cipher")), None)
        if shop is None:
            raise Rejected("The TikTok Shop account has no shop to connect.", code="no_shop")
        return token_credentials(
            data,
            app_key=app.app_key,
            app_secret=app.app_secret,
            shop_id=str(shop["id"]),
            shop_cipher=str(shop["cipher"]),
        )
