"""The Lazada plugin: declared capabilities, schemas, the adapter factory and the connect-by-authorisation flow."""

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
from agrimarket.channels.errors import Rejected
from agrimarket.channels.lazada.adapter import LazadaAdapter, token_credentials
from agrimarket.channels.lazada.client import LazadaClient
from agrimarket.channels.lazada.schemas import LazadaApp, LazadaCredentials, LazadaSettings
from agrimarket.channels.lazada.signing import Clock
from agrimarket.channels.plugin_base import AppPlugin
from agrimarket.media.rules import LAZADA

NAME = "lazada"

CAPABILITIES = Capabilities(
    name=NAME,
    display_name="Lazada",
    # The stock and price APIs take at most 50 SKUs and Lazada recommends 20 (updatesellablequantity.json): we
    # send 20, since larger calls are where ServiceTimeout shows up and one refused call then holds fewer SKUs.
    # A thousand SKUs is still only 50 calls.
    stock_batch=BatchLimit(20),
    price_batch=BatchLimit(20),
    rate_limit=RateLimit(
        calls=10,
        per_seconds=1.0,
        burst=5,
        documented=False,
        source="Lazada limits each API per second but publishes no figure (ApiCallLimit; marketplaces.md §2.5): "
        "10 calls/s is our stated default.",
    ),
    limits=ListingLimits(
        title_max=255,
        description_max=25_000,
        images_min=1,
        images_max=8,
        variants_max=50,  # one /product/create holds every variation; kept within the 50-SKU batch size
        sku_max=200,
    ),
    features=frozenset(
        {
            Feature.variants,
            Feature.price_update,
            Feature.delist,
            Feature.order_polling,
            Feature.webhooks,
            Feature.fulfilment,
            Feature.image_upload,
        }
    ),
    # Brand, package size and weight have defaults in the settings; a category may too, so it is checked at publish.
    required_fields=frozenset({"images"}),
    image_rule=LAZADA.purpose,
)


class LazadaPlugin(AppPlugin[LazadaApp]):
    """``app``: AgriMarket's Lazada app for the authorisation flow (default: read from the environment, see
    :class:`LazadaApp`); a connection's own calls use the app key and secret stored in its credentials.
    ``clock``: the time requests are stamped with (tests move it)."""

    credentials_model = LazadaCredentials
    settings_model = LazadaSettings
    shop_id_key = "seller_id"
    app_missing = "AgriMarket has no Lazada app configured (AGRIMARKET_LAZADA_APP_KEY / AGRIMARKET_LAZADA_APP_SECRET)."

    def __init__(self, app: LazadaApp | None = None, *, clock: Clock = time.time) -> None:
        super().__init__(NAME, CAPABILITIES, app, LazadaApp)
        self._clock = clock

    def adapter(self, connection: ConnectionInfo, http: httpx.AsyncClient) -> ChannelAdapter:
        return LazadaAdapter(CAPABILITIES, connection, http, clock=self._clock)

    # -- connect by authorisation ----------------------------------------------------------------------------

    def authorization_url(self, request: AuthorizationRequest) -> str:
        settings = LazadaSettings.model_validate(request.settings or {})
        query = {
            "response_type": "code",
            "force_auth": "true",
            "redirect_uri": request.redirect_uri,
            "client_id": self._configured_app().app_key,
            "state": request.state,
            "country": "vn",
        }
        return f"{settings.auth_url.rstrip('/')}/oauth/authorize?{urlencode(query)}"

    async def exchange_code(
        self, callback: Mapping[str, str], request: AuthorizationRequest, http: httpx.AsyncClient
    ) -> Mapping[str, Any]:
        """``/auth/token/create`` on the auth host with the one-time ``code``; a refused code is Rejected."""
        code = callback.get("code")
        if not code:
            raise Rejected("Lazada sent the seller back without an authorisation code.", code="code_missing")
        if callback.get("state") is not None and callback["state"] != request.state:
            raise Rejected("The authorisation answer belongs to another request.", code="state_mismatch")
        app = self._configured_app()
        settings = LazadaSettings.model_validate(request.settings or {})
        client = LazadaClient(
            http,
            base_url=settings.auth_url.rstrip("/") + "/rest",
            app_key=app.app_key,
            app_secret=app.app_secret,
            clock=self._clock,
        )
        answer = await client.call("/auth/token/create", {"code": code})
        return token_credentials(answer, app_key=app.app_key, app_secret=app.app_secret, now=self._clock())
