"""The Tiki plugin: declared capabilities, schemas, the adapter factory and the connect-by-authorisation flow."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

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
from agrimarket.channels.errors import Rejected, Retryable
from agrimarket.channels.plugin_base import AppPlugin
from agrimarket.channels.tiki.adapter import SKUS_BATCH, AppCache, Clock, TikiAdapter, token_credentials
from agrimarket.channels.tiki.auth import TokenEndpoint, authorization_url
from agrimarket.channels.tiki.client import TikiClient
from agrimarket.channels.tiki.schemas import SCOPE, TikiApp, TikiCredentials, TikiSettings
from agrimarket.media.rules import TIKI

NAME = "tiki"

CAPABILITIES = Capabilities(
    name=NAME,
    display_name="Tiki",
    # updateSkus publishes no maximum (marketplaces.md §4, UNCONFIRMED): 50 products per call is our stated default.
    # Each variant is a product of its own, so a batch never has to stay within one item.
    stock_batch=BatchLimit(SKUS_BATCH),
    price_batch=BatchLimit(SKUS_BATCH),
    rate_limit=RateLimit(
        calls=5,
        per_seconds=1.0,
        burst=5,
        documented=False,
        source="Tiki publishes no rate limit (marketplaces.md §4, UNCONFIRMED): 5 calls/s is our stated default.",
    ),
    limits=ListingLimits(
        title_max=255,
        description_max=50_000,
        images_min=1,
        images_max=8,
        variants_max=20,  # variants of one product request (UNCONFIRMED): our stated default
        sku_max=100,
        stock_max=99_999,
    ),
    # No Feature.variants: every variant becomes a Tiki product of its own. No Feature.webhooks: Tiki signs no push;
    # new orders come from its event queue (the adapter implements channels.base.EventQueue).
    features=frozenset(
        {Feature.price_update, Feature.delist, Feature.order_polling, Feature.fulfilment, Feature.image_upload}
    ),
    required_fields=frozenset({"images"}),
    image_rule=TIKI.purpose,
)


class TikiPlugin(AppPlugin[TikiApp]):
    """``app``: AgriMarket's Tiki app for the authorisation flow (default: read from the environment, see
    :class:`TikiApp`); a connection's own calls use the client id and secret stored in its credentials.
    ``clock``: the time tokens are dated with (tests move it)."""

    credentials_model = TikiCredentials
    settings_model = TikiSettings
    shop_id_key = "seller_id"
    app_missing = "AgriMarket has no Tiki app configured (AGRIMARKET_TIKI_CLIENT_ID / AGRIMARKET_TIKI_CLIENT_SECRET)."

    def __init__(self, app: TikiApp | None = None, *, clock: Clock = time.time) -> None:
        super().__init__(NAME, CAPABILITIES, app, TikiApp)
        self._clock = clock
        self._cache = AppCache()

    def adapter(self, connection: ConnectionInfo, http: httpx.AsyncClient) -> ChannelAdapter:
        return TikiAdapter(CAPABILITIES, connection, http, cache=self._cache, clock=self._clock)

    # -- connect by authorisation ----------------------------------------------------------------------------

    def authorization_url(self, request: AuthorizationRequest) -> str:
        settings = TikiSettings.model_validate(request.settings or {})
        return authorization_url(
            settings.auth_url,
            client_id=self._configured_app().client_id,
            redirect_uri=request.redirect_uri,
            state=request.state,
            scope=SCOPE,
        )

    async def exchange_code(
        self, callback: Mapping[str, str], request: AuthorizationRequest, http: httpx.AsyncClient
    ) -> Mapping[str, Any]:
        """The authorization-code grant (the same ``redirect_uri``), then ``GET /integration/v2/sellers/me`` for the
        seller's id. Tiki echoes ``state``; one that differs is refused."""
        if callback.get("error"):
            raise Rejected(f"Tiki did not authorise AgriMarket: {callback['error']}", code="authorisation_refused")
        code = callback.get("code")
        if not code:
            raise Rejected("Tiki sent the seller back without an authorisation code.", code="code_missing")
        if callback.get("state") != request.state:
            raise Rejected("The authorisation answer belongs to another request.", code="state_mismatch")
        app = self._configured_app()
        settings = TikiSettings.model_validate(request.settings or {})
        tokens = TokenEndpoint(
            http,
            auth_url=settings.auth_url,
            client_id=app.client_id,
            client_secret=app.client_secret,
            clock=self._clock,
        )
        answer = await tokens.exchange_code(code, request.redirect_uri)
        seller = await TikiClient(http, base_url=settings.api_url, token=answer.access_token).call(
            "GET", "/integration/v2/sellers/me"
        )
        if not isinstance(seller, dict) or seller.get("id") is None:
            raise Retryable("Tiki did not say which seller authorised AgriMarket.", code="seller_missing")
        return token_credentials(
            client_id=app.client_id,
            client_secret=app.client_secret,
            seller_id=str(seller["id"]),
            access_token=answer.access_token,
            refresh_token=answer.refresh_token,
            scope=answer.scope,
            expires_at=answer.expires_at,
        )
