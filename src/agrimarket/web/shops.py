"""A product's shops: one chip per connected shop (on sale, sending, in review, error, refused, paused, not there)
with the marketplace's own words, and a form per shop to publish the product there, pause or resume it
(``ListingService``, as the API's listing endpoints)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response

from agrimarket.accounts.service import Principal
from agrimarket.catalog.endpoints import CatalogServiceDep
from agrimarket.catalog.service import CatalogService
from agrimarket.channels.endpoints import ConnectionServiceDep, ListingServiceDep
from agrimarket.channels.schemas import ListingCreate
from agrimarket.channels.service import ConnectionService, ListingService, ListingView
from agrimarket.errors import AgriMarketError, Conflict, Invalid
from agrimarket.models import ChannelConnection, ConnectionStatus, ListingStatus
from agrimarket.web import labels
from agrimarket.web.forms import CheckedForm
from agrimarket.web.i18n import Translator
from agrimarket.web.orders import channel_name
from agrimarket.web.pages import PagePrincipal, PageRejected, TranslatorDep, render, see_other
from agrimarket.web.routes import router


@dataclass(frozen=True)
class Chip:
    connection: ChannelConnection
    shop: str  # the marketplace's name
    state: str  # a key of labels.CHIPS
    said: str | None  # the marketplace's own words
    actions: tuple[str, ...]  # publish / pause / resume


def chip_state(listing: ListingView | None) -> str:
    if listing is None or listing.status is ListingStatus.delisted:
        return "unlisted"
    status = listing.status
    if status is ListingStatus.paused:
        return "paused"
    if status in (ListingStatus.error, ListingStatus.rejected):
        return status.value
    if listing.syncing:
        return "syncing"
    return "live" if status is ListingStatus.live else "review"


_ACTIONS: dict[str, tuple[str, ...]] = {
    "unlisted": ("publish",),
    "paused": ("resume",),
    "error": ("resume", "pause"),
    "rejected": ("resume",),
    "syncing": ("pause",),
    "review": ("pause",),
    "live": ("pause",),
}


async def chips(
    principal: Principal,
    connections: ConnectionService,
    listings: ListingService,
    organization_id: uuid.UUID,
    product_id: uuid.UUID,
) -> list[Chip]:
    shops = [
        view.connection
        for view in await connections.list_connections(principal.access, organization_id)
        if view.connection.status is not ConnectionStatus.disconnected
    ]
    by_shop = {view.connection.id: view for view in await listings.listings_of_product(principal.access, product_id)}
    found = []
    for shop in shops:
        listing = by_shop.get(shop.id)
        state = chip_state(listing)
        found.append(
            Chip(
                shop,
                channel_name(connections.registry, shop.channel),
                state,
                listing.message if listing is not None and state in ("error", "rejected", "review") else None,
                _ACTIONS[state] if shop.status is ConnectionStatus.active else (),
            )
        )
    return found


async def _page(
    request: Request,
    principal: Principal,
    catalog: CatalogService,
    connections: ConnectionService,
    listings: ListingService,
    product_id: uuid.UUID,
    *,
    error: tuple[uuid.UUID, str] | None = None,
    status_code: int = 200,
) -> Response:
    view = await catalog.get_product(principal.access, product_id)
    organization_id = view.product.organization_id
    return render(
        request,
        "shops.html",
        {
            "product": view.product,
            "chips": await chips(principal, connections, listings, organization_id, product_id),
            "labels": labels.CHIPS,
            "help": labels.CHIP_HELP,
            "error": error,
        },
        status_code=status_code,
        principal=principal,
    )


@router.get("/products/{product_id}/shops")
async def shops_page(
    request: Request,
    product_id: uuid.UUID,
    principal: PagePrincipal,
    catalog: CatalogServiceDep,
    connections: ConnectionServiceDep,
    listings: ListingServiceDep,
) -> Response:
    return await _page(request, principal, catalog, connections, listings, product_id)


def publish_refusal(exc: AgriMarketError, shop: str, tr: Translator) -> str:
    """Why the product cannot go on this shop, in plain words; the check's own message follows."""
    if isinstance(exc, Invalid):
        problems = (exc.details or {}).get("problems") or [{"message": exc.message}]
        said = " ".join(str(p.get("message", "")) for p in problems[:3])
        plain = tr.gettext(labels.CHANNEL_REFUSALS["check"], shop=shop)
        return f"{plain} {tr.gettext('The marketplace said:')} “{said}”"
    if isinstance(exc, Conflict) and "already listed" in exc.message:
        return tr.gettext(labels.CHANNEL_REFUSALS["listed"], shop=shop)
    return tr.gettext(labels.CHANNEL_REFUSALS["not_active"], shop=shop)


@router.post("/products/{product_id}/shops/{connection_id}/{action}")
async def shop_action(
    form: CheckedForm,
    request: Request,
    product_id: uuid.UUID,
    connection_id: uuid.UUID,
    action: str,
    principal: PagePrincipal,
    catalog: CatalogServiceDep,
    connections: ConnectionServiceDep,
    listings: ListingServiceDep,
    tr: TranslatorDep,
) -> Response:
    """Publish on one shop, pause or resume there; the sync engine then sends it (the chip shows how it goes)."""
    try:
        if action == "publish":
            await listings.publish(principal.access, connection_id, ListingCreate(product_id=product_id))
        elif action == "pause":
            await listings.pause(principal.access, connection_id, product_id)
        elif action == "resume":
            await listings.resume(principal.access, connection_id, product_id)
        else:
            return see_other(f"/products/{product_id}/shops")
    except (Invalid, Conflict) as exc:
        shop = await connections.get_connection(principal.access, connection_id)
        message = publish_refusal(exc, channel_name(connections.registry, shop.connection.channel), tr)
        page = await _page(
            request,
            principal,
            catalog,
            connections,
            listings,
            product_id,
            error=(connection_id, message),
            status_code=exc.status_code,
        )
        raise PageRejected(page) from None
    return see_other(f"/products/{product_id}/shops#s-{connection_id}")
