"""Channels API: the marketplaces available, an organization's connected shops, and what is listed on them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession

from agrimarket.channels import schemas
from agrimarket.channels.authorization import StateSealer
from agrimarket.channels.registry import ChannelRegistry, channels
from agrimarket.channels.repository import ChannelRepository
from agrimarket.channels.service import ChannelView, ConnectionService, ConnectionView, ListingService, ListingView
from agrimarket.config import Settings
from agrimarket.deps import PrincipalDep, SessionDep, SettingsDep, WriteSessionDep
from agrimarket.kit.crypto import CredentialCipher
from agrimarket.kit.pagination import Cursor, Page
from agrimarket.models import ListingStatus
from agrimarket.sync.runtime import runtime

router = APIRouter(prefix="/api/v1", tags=["channels"])


# async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop on every request.
async def get_channels(request: Request) -> ChannelRegistry:
    """The app's own registry when one was given (tests, embedding), else the process's, from entry points."""
    registry: ChannelRegistry | None = getattr(request.app.state, "channels", None)
    return registry if registry is not None else channels()


ChannelsDep = Annotated[ChannelRegistry, Depends(get_channels)]


def _connection_service(session: AsyncSession, registry: ChannelRegistry, settings: Settings) -> ConnectionService:
    sealer = StateSealer(settings.secret_key) if settings.secret_key is not None else None
    return ConnectionService(ChannelRepository(session), registry, CredentialCipher(settings.encryption_keys), sealer)


def get_connection_service(session: SessionDep, registry: ChannelsDep, settings: SettingsDep) -> ConnectionService:
    return _connection_service(session, registry, settings)


def get_writing_connection_service(
    session: WriteSessionDep, registry: ChannelsDep, settings: SettingsDep
) -> ConnectionService:
    return _connection_service(session, registry, settings)


def get_clock(request: Request) -> Callable[[], float]:
    """Seconds since the epoch; tests put their own clock on ``app.state.clock``."""
    clock: Callable[[], float] | None = getattr(request.app.state, "clock", None)
    return clock if clock is not None else time.time


ClockDep = Annotated[Callable[[], float], Depends(get_clock)]


def get_listing_service(session: SessionDep, registry: ChannelsDep) -> ListingService:
    return ListingService(ChannelRepository(session), registry)


ConnectionServiceDep = Annotated[ConnectionService, Depends(get_connection_service)]
WritingConnectionServiceDep = Annotated[ConnectionService, Depends(get_writing_connection_service)]
ListingServiceDep = Annotated[ListingService, Depends(get_listing_service)]


def channel_out(view: ChannelView) -> schemas.ChannelOut:
    capabilities = view.capabilities
    limits = capabilities.limits
    return schemas.ChannelOut(
        name=capabilities.name,
        display_name=capabilities.display_name,
        features=sorted(capabilities.features),
        stock_batch=schemas.BatchLimitOut(
            max_size=capabilities.stock_batch.max_size, per_item=capabilities.stock_batch.per_item
        ),
        price_batch=schemas.BatchLimitOut(
            max_size=capabilities.price_batch.max_size, per_item=capabilities.price_batch.per_item
        ),
        rate_limit=schemas.RateLimitOut(
            calls=capabilities.rate_limit.calls,
            per_seconds=capabilities.rate_limit.per_seconds,
            burst=capabilities.rate_limit.burst,
            documented=capabilities.rate_limit.documented,
            source=capabilities.rate_limit.source,
        ),
        max_in_flight=capabilities.max_in_flight,
        limits=schemas.ListingLimitsOut(
            title_min=limits.title_min,
            title_max=limits.title_max,
            description_max=limits.description_max,
            images_min=limits.images_min,
            images_max=limits.images_max,
            variants_max=limits.variants_max,
            price_min_vnd=limits.price_min_vnd,
            price_max_vnd=limits.price_max_vnd,
            stock_max=limits.stock_max,
            sku_max=limits.sku_max,
        ),
        required_fields=sorted(capabilities.required_fields),
        image_rule=capabilities.image_rule,
        credential_fields=view.credential_fields,
        setting_fields=view.setting_fields,
        connect_by_authorization=view.connect_by_authorization,
    )


def connection_out(view: ConnectionView) -> schemas.ConnectionOut:
    connection = view.connection
    return schemas.ConnectionOut(
        id=connection.id,
        organization_id=connection.organization_id,
        channel=connection.channel,
        name=connection.name,
        external_shop_id=connection.external_shop_id,
        status=connection.status,
        settings=view.channel_settings,
        category_map=view.category_map,
        credential_fields=view.credential_fields,
        credentials_version=connection.credentials_version,
        last_error=connection.last_error,
        last_synced_at=connection.last_synced_at,
        token_expires_at=connection.token_expires_at,
        circuit_open_until=connection.circuit_open_until,
        listings=view.listings,
        created_at=connection.created_at,
        updated_at=connection.updated_at,
    )


def listing_out(view: ListingView) -> schemas.ListingOut:
    return schemas.ListingOut(
        connection_id=view.connection.id,
        connection_name=view.connection.name,
        channel=view.connection.channel,
        product_id=view.product_id,
        status=view.status,
        message=view.message,
        external_item_id=view.external_item_id,
        overrides=view.overrides,
        syncing=view.syncing,
        updated_at=view.updated_at,
        variants=[
            schemas.ListingVariantOut(
                listing_id=r.row.id,
                variant_id=r.variant.id,
                sku=r.variant.sku,
                name=r.variant.name,
                status=r.row.status,
                external_sku_id=r.row.external_sku_id,
                pushed_price_vnd=r.pushed_price_vnd,
                pushed_stock=r.pushed_stock,
                desired_price_vnd=r.desired_price_vnd,
                desired_stock=r.desired_stock,
            )
            for r in view.rows
        ],
    )


# -- channels and connections -------------------------------------------------------------------------------


@router.get("/channels")
async def list_channels(_principal: PrincipalDep, connections: ConnectionServiceDep) -> list[schemas.ChannelOut]:
    """The marketplaces this server can connect to, with the limits each declares (batches, rate, listings)."""
    return [channel_out(view) for view in connections.channels()]


@router.post("/organizations/{organization_id}/connections", status_code=status.HTTP_201_CREATED)
async def connect_shop(
    organization_id: uuid.UUID,
    body: schemas.ConnectionCreate,
    principal: PrincipalDep,
    connections: ConnectionServiceDep,
) -> schemas.ConnectionOut:
    """Connect a shop (admins and owners): its credentials are checked, stored encrypted, and never shown again."""
    return connection_out(await connections.connect(principal.access, organization_id, body))


@router.post("/organizations/{organization_id}/connections/authorize")
async def authorize_shop(
    organization_id: uuid.UUID,
    body: schemas.ConnectionAuthorize,
    principal: PrincipalDep,
    connections: ConnectionServiceDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> schemas.AuthorizationOut:
    """Start connecting a shop through the marketplace's own authorisation page (admins and owners): send the
    seller's browser to `authorization_url`; the marketplace sends them back to the callback within 10 minutes."""
    started = await connections.start_authorization(
        principal.access, organization_id, body, public_url=settings.public_url, now=clock()
    )
    return schemas.AuthorizationOut(authorization_url=started.authorization_url, expires_at=started.expires_at)


@router.get(
    "/connections/callback/{channel}",
    response_model=schemas.ConnectionOut,
    responses={status.HTTP_303_SEE_OTHER: {"description": "Connected; on to `AGRIMARKET_CONNECT_DONE_URL`."}},
)
async def authorization_callback(
    channel: str,
    request: Request,
    principal: PrincipalDep,
    connections: WritingConnectionServiceDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> schemas.ConnectionOut | Response:
    """Where the marketplace sends the seller back after they authorise AgriMarket (with the session cookie):
    the shop is connected, or its connection here gets the new credentials. Answers the connection, or a 303 to
    the configured done page with `connection_id` in its query."""
    view = await connections.finish_authorization(
        principal.access,
        channel,
        request.query_params.multi_items(),
        public_url=settings.public_url,
        http=runtime(settings).http,
        now=clock(),
    )
    if settings.connect_done_url:
        separator = "&" if "?" in settings.connect_done_url else "?"
        location = settings.connect_done_url + separator + urlencode({"connection_id": str(view.connection.id)})
        return RedirectResponse(location, status_code=status.HTTP_303_SEE_OTHER)
    return connection_out(view)


@router.get("/organizations/{organization_id}/connections")
async def list_connections(
    organization_id: uuid.UUID, principal: PrincipalDep, connections: ConnectionServiceDep
) -> list[schemas.ConnectionOut]:
    """The organization's connected shops, oldest first, with how many products each lists by status."""
    return [connection_out(view) for view in await connections.list_connections(principal.access, organization_id)]


@router.get("/connections/{connection_id}")
async def get_connection(
    connection_id: uuid.UUID, principal: PrincipalDep, connections: ConnectionServiceDep
) -> schemas.ConnectionOut:
    """One connected shop: its status, last error and last sync (the names of its credentials, never their values)."""
    return connection_out(await connections.get_connection(principal.access, connection_id))


@router.patch("/connections/{connection_id}")
async def update_connection(
    connection_id: uuid.UUID,
    body: schemas.ConnectionUpdate,
    principal: PrincipalDep,
    connections: ConnectionServiceDep,
) -> schemas.ConnectionOut:
    """Rename, replace credentials, change settings or the category map, pause or resume (admins and owners)."""
    return connection_out(await connections.update_connection(principal.access, connection_id, body))


@router.delete("/connections/{connection_id}", status_code=status.HTTP_204_NO_CONTENT)
async def disconnect_shop(connection_id: uuid.UUID, principal: PrincipalDep, connections: ConnectionServiceDep) -> None:
    """Disconnect a shop (admins and owners): syncing stops and its credentials are erased; listings stay as they
    are on the channel, so delist first to take them off sale."""
    await connections.disconnect(principal.access, connection_id)


# -- listings -----------------------------------------------------------------------------------------------


@router.post("/connections/{connection_id}/listings", status_code=status.HTTP_201_CREATED)
async def publish_listing(
    connection_id: uuid.UUID, body: schemas.ListingCreate, principal: PrincipalDep, listings: ListingServiceDep
) -> schemas.ListingOut:
    """List a product on this shop with its own title, price and stock rules; checked against the channel first."""
    return listing_out(await listings.publish(principal.access, connection_id, body))


@router.get("/connections/{connection_id}/listings")
async def list_listings(
    connection_id: uuid.UUID,
    principal: PrincipalDep,
    listings: ListingServiceDep,
    status: ListingStatus | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Page[schemas.ListingOut]:
    """Products listed on this shop, most recently listed first; pass `next_cursor` back as `cursor`."""
    views, next_cursor = await listings.list_listings(
        principal.access, connection_id, status=status, cursor=Cursor.decode(cursor) if cursor else None, limit=limit
    )
    return Page(items=[listing_out(v) for v in views], next_cursor=next_cursor.encode() if next_cursor else None)


@router.get("/connections/{connection_id}/listings/{product_id}")
async def get_listing(
    connection_id: uuid.UUID, product_id: uuid.UUID, principal: PrincipalDep, listings: ListingServiceDep
) -> schemas.ListingOut:
    """One product's listing on this shop: its status, the channel's message, and each variant's price and stock."""
    return listing_out(await listings.get_listing(principal.access, connection_id, product_id))


@router.patch("/connections/{connection_id}/listings/{product_id}")
async def update_listing(
    connection_id: uuid.UUID,
    product_id: uuid.UUID,
    body: schemas.ListingUpdate,
    principal: PrincipalDep,
    listings: ListingServiceDep,
) -> schemas.ListingOut:
    """Replace the listing's overrides; checked against the channel, then pushed."""
    return listing_out(await listings.update_listing(principal.access, connection_id, product_id, body.overrides))


@router.post("/connections/{connection_id}/listings/{product_id}/pause")
async def pause_listing(
    connection_id: uuid.UUID, product_id: uuid.UUID, principal: PrincipalDep, listings: ListingServiceDep
) -> schemas.ListingOut:
    """Take the product off sale on this shop (stock 0 there), keeping the listing; a paused listing stays so."""
    return listing_out(await listings.pause(principal.access, connection_id, product_id))


@router.post("/connections/{connection_id}/listings/{product_id}/resume")
async def resume_listing(
    connection_id: uuid.UUID, product_id: uuid.UUID, principal: PrincipalDep, listings: ListingServiceDep
) -> schemas.ListingOut:
    """Put a paused listing back on sale, or try a refused one again."""
    return listing_out(await listings.resume(principal.access, connection_id, product_id))


@router.delete("/connections/{connection_id}/listings/{product_id}")
async def delist_listing(
    connection_id: uuid.UUID, product_id: uuid.UUID, principal: PrincipalDep, listings: ListingServiceDep
) -> schemas.ListingOut:
    """Delist the product from this shop; publish it again later with POST …/listings."""
    return listing_out(await listings.delist(principal.access, connection_id, product_id))


@router.get("/products/{product_id}/listings")
async def listings_of_product(
    product_id: uuid.UUID, principal: PrincipalDep, listings: ListingServiceDep
) -> list[schemas.ListingOut]:
    """The product's listing on every connected shop."""
    return [listing_out(v) for v in await listings.listings_of_product(principal.access, product_id)]
