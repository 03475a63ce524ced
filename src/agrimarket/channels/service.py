"""Connection and listing rules. Never commits.

A connection's credentials are checked by its channel's own schema, then stored encrypted (MultiFernet: the
newest key encrypts, any configured key decrypts) and never shown again, not even encrypted: reads give their
names only. Its settings are stored as ``{"channel": <the channel's settings>, "category_map": {...}}``, the
layout the sync engine reads.

A listing is a product on a connection, stored as one row per variant carrying the product's overrides. Every
change that the shop must hear about bumps the rows' ``desired_version`` and asks for a sync in the same
transaction; the sync engine does the talking. Before a listing is accepted it is checked against the channel's
declared limits (:func:`agrimarket.channels.validation.check_listing`), with every problem named at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError
from pydantic_core import to_jsonable_python

from agrimarket.accounts.permissions import Access
from agrimarket.catalog.repository import CatalogRepository
from agrimarket.channels.authorization import (
    STATE_TTL_SECONDS,
    StateExpired,
    StateInvalid,
    StateSealer,
    redirect_uri,
)
from agrimarket.channels.base import AuthorizationRequest, Capabilities, ChannelPlugin, OAuthPlugin, VariantDraft
from agrimarket.channels.errors import ChannelError, Retryable
from agrimarket.channels.registry import ChannelRegistry
from agrimarket.channels.repository import ChannelRepository, product_status
from agrimarket.channels.rules import ListingOverrides
from agrimarket.channels.schemas import (
    ConnectionAuthorize,
    ConnectionCreate,
    ConnectionUpdate,
    ListingCreate,
    SettableStatus,
)
from agrimarket.channels.validation import Problem, check_listing, missing_category
from agrimarket.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from agrimarket.inventory.repository import InventoryRepository
from agrimarket.kit.crypto import CredentialCipher
from agrimarket.kit.pagination import Cursor
from agrimarket.media.repository import MediaRepository
from agrimarket.models import (
    ChannelConnection,
    ConnectionStatus,
    Listing,
    ListingStatus,
    Product,
    ProductStatus,
    Role,
    StockLevel,
    Variant,
)

CONNECTION_NOT_FOUND = "Connection not found."
NOT_LISTED = "This product is not listed on this connection."


@dataclass(frozen=True)
class ChannelView:
    plugin: ChannelPlugin
    credential_fields: list[str]
    setting_fields: list[str]

    @property
    def connect_by_authorization(self) -> bool:
        return isinstance(self.plugin, OAuthPlugin)

    @property
    def capabilities(self) -> Capabilities:
        return self.plugin.capabilities


@dataclass(frozen=True)
class ConnectionView:
    connection: ChannelConnection
    credential_fields: list[str]
    listings: dict[ListingStatus, int]

    @property
    def channel_settings(self) -> dict[str, Any]:
        return dict((self.connection.settings or {}).get("channel") or {})

    @property
    def category_map(self) -> dict[str, str]:
        return dict((self.connection.settings or {}).get("category_map") or {})


@dataclass(frozen=True)
class ListingRowView:
    row: Listing
    variant: Variant
    desired_price_vnd: int
    desired_stock: int

    @property
    def pushed_price_vnd(self) -> int | None:
        return (self.row.pushed_state or {}).get("price_vnd")

    @property
    def pushed_stock(self) -> int | None:
        return (self.row.pushed_state or {}).get("stock")


@dataclass(frozen=True)
class ListingView:
    connection: ChannelConnection
    product_id: uuid.UUID
    status: ListingStatus
    message: str | None
    overrides: ListingOverrides
    rows: list[ListingRowView]

    @property
    def external_item_id(self) -> str | None:
        return next((r.row.external_item_id for r in self.rows if r.row.external_item_id), None)

    @property
    def syncing(self) -> bool:
        return any(r.row.desired_version > r.row.pushed_version for r in self.rows)

    @property
    def updated_at(self) -> datetime:
        return max(r.row.updated_at for r in self.rows)


@dataclass(frozen=True)
class AuthorizationStart:
    authorization_url: str
    expires_at: datetime


# -- connections --------------------------------------------------------------------------------------------------


class ConnectionService:
    def __init__(
        self,
        repository: ChannelRepository,
        registry: ChannelRegistry,
        cipher: CredentialCipher,
        sealer: StateSealer | None = None,
    ) -> None:
        self.repo = repository
        self.registry = registry
        self.cipher = cipher
        self.sealer = sealer

    def channels(self) -> list[ChannelView]:
        return [_channel_view(self.registry.plugins[name]) for name in self.registry.names]

    async def connect(self, access: Access, organization_id: uuid.UUID, data: ConnectionCreate) -> ConnectionView:
        """A new connection, or a disconnected one of this organization's for the same shop brought back."""
        access.require(organization_id, Role.admin)
        plugin = self.registry.get(data.channel)
        display = plugin.capabilities.display_name
        credentials = _validated(plugin.credentials_schema, data.credentials, "credentials", display)
        channel_settings = _validated(plugin.settings_schema, data.settings, "settings", display, exclude_unset=True)
        return await self._connect(
            organization_id,
            plugin,
            name=data.name,
            credentials=credentials,
            channel_settings=channel_settings,
            category_map=_category_map(data.category_map),
            renew=False,
        )

    # -- connecting by the marketplace's authorisation page ---------------------------------------------------

    async def start_authorization(
        self,
        access: Access,
        organization_id: uuid.UUID,
        data: ConnectionAuthorize,
        *,
        public_url: str | None,
        now: float,
    ) -> AuthorizationStart:
        """Where to send the seller to authorise AgriMarket on the marketplace; the way back carries a sealed
        state (:mod:`agrimarket.channels.authorization`). Nothing is written until the seller comes back."""
        access.require(organization_id, Role.admin)
        plugin = self.registry.get(data.channel)
        oauth = _oauth(plugin)
        display = plugin.capabilities.display_name
        channel_settings = (
            _validated(plugin.settings_schema, data.settings, "settings", display, exclude_unset=True)
            if data.settings is not None
            else None
        )
        public_url = _required(public_url, display)
        token, state = self._sealer().seal(
            organization_id=organization_id,
            user_id=access.user_id,
            channel=plugin.name,
            name=data.name,
            settings=channel_settings,
            category_map=_category_map(data.category_map) if data.category_map is not None else None,
            now=now,
        )
        request = AuthorizationRequest(redirect_uri(public_url, plugin.name, token), token, channel_settings or {})
        return AuthorizationStart(oauth.authorization_url(request), state.expires_at)

    async def finish_authorization(
        self,
        access: Access,
        channel: str,
        query: Sequence[tuple[str, str]],
        *,
        public_url: str | None,
        http: httpx.AsyncClient,
        now: float,
    ) -> ConnectionView:
        """The seller is back from the marketplace: check the state, trade the code for the shop's credentials,
        and connect the shop (or renew the credentials of this organization's connection to it)."""
        plugin = self.registry.get(channel)
        oauth = _oauth(plugin)
        display = plugin.capabilities.display_name
        callback = dict(query)
        states = {value for key, value in query if key == "state"}
        if not states:
            raise Invalid(
                f"{display} sent you back without the authorisation's state, so AgriMarket cannot tell which "
                "connection this is. Start connecting the shop again from AgriMarket.",
                field="state",
            )
        try:
            if len(states) > 1:
                raise StateInvalid("two different states")
            token = states.pop()
            state = self._sealer().open(token, now=now)
        except StateExpired:
            raise Invalid(
                f"This authorisation link has expired: it lasts {STATE_TTL_SECONDS // 60} minutes. "
                "Start connecting the shop again from AgriMarket.",
                field="state",
            ) from None
        except StateInvalid:
            raise Invalid(_NOT_OUR_STATE, field="state") from None
        if state.channel != plugin.name:
            raise Invalid(_NOT_OUR_STATE, field="state")
        if state.user_id != access.user_id:
            raise Forbidden(
                "This authorisation was started by another AgriMarket account. Log in as the person who started "
                "it, or start connecting the shop again yourself.",
                field="state",
            )
        # The role may have been taken away while the seller was on the marketplace's page.
        access.require(state.organization_id, Role.admin)
        if error := callback.get("error"):
            said = callback.get("error_description") or error
            raise Invalid(
                f"{display} says AgriMarket was not authorised ({said[:200]}), so nothing was connected. To connect "
                f"the shop, start again and accept on {display}'s page.",
                field="error",
            )
        if not callback.get("code"):
            raise Invalid(
                f"{display} sent you back without an authorisation code, so nothing was connected. "
                "Start connecting the shop again from AgriMarket.",
                field="code",
            )
        request = AuthorizationRequest(
            redirect_uri(_required(public_url, display), plugin.name, token), token, state.settings or {}
        )
        try:
            obtained = await oauth.exchange_code(callback, request, http)
        except Retryable as exc:
            raise Unavailable(
                f"{display} did not answer ({exc.message}). Reload this page in a moment to try again.", field="code"
            ) from exc
        except ChannelError as exc:
            if await self.repo.connect_state_used(state.nonce):
                raise Invalid(_STATE_USED, field="state") from exc
            raise Invalid(
                f"{display} refused the authorisation: {exc.message}. Start connecting the shop again from AgriMarket.",
                field="code",
            ) from exc
        credentials = _validated(plugin.credentials_schema, obtained, "credentials", display)
        used_at = datetime.fromtimestamp(now, UTC)
        if not await self.repo.use_connect_state(state.nonce, state.organization_id, used_at, state.expires_at):
            raise Invalid(_STATE_USED, field="state")
        return await self._connect(
            state.organization_id,
            plugin,
            name=state.name,
            credentials=credentials,
            channel_settings=state.settings,
            category_map=state.category_map,
            renew=True,
        )

    async def _connect(
        self,
        organization_id: uuid.UUID,
        plugin: ChannelPlugin,
        *,
        name: str,
        credentials: dict[str, Any],
        channel_settings: dict[str, Any] | None,
        category_map: dict[str, str] | None,
        renew: bool,
    ) -> ConnectionView:
        """Connect a shop with checked credentials. A shop this organization disconnected comes back; one it has
        connected is refused, or with ``renew`` gets the new credentials (and name, and settings when given)."""
        display = plugin.capabilities.display_name
        field = "state" if renew else "credentials"
        shop_id = plugin.shop_id(credentials)
        existing = await self.repo.connection_of_shop(plugin.name, shop_id) if shop_id is not None else None
        if existing is not None:
            if existing.organization_id != organization_id:
                raise Conflict(
                    f"This {display} shop is already connected to another organization on AgriMarket. "
                    "Ask its owner to disconnect it there first, or connect a different shop.",
                    field=field,
                )
            if existing.status is not ConnectionStatus.disconnected and not renew:
                raise Conflict(
                    f"This {display} shop is already connected here, as “{existing.name}”. "
                    "Change that connection instead (new credentials, settings or category map).",
                    field=field,
                )
            connection = await self.repo.connection(existing.id, lock=True)
            assert connection is not None
            if connection.status is not ConnectionStatus.disconnected:
                # Authorised again (a token about to lapse, a revoked app): same shop, new credentials.
                return await self._change(
                    connection,
                    name=name,
                    credentials=credentials,
                    channel_settings=channel_settings,
                    category_map=category_map,
                )
            connection.name = name
            connection.settings = _settings(connection.settings, channel_settings, category_map)
            connection.status = ConnectionStatus.active
            connection.last_error = None
            connection.circuit_failures = 0
            connection.circuit_open_until = None
            self._store_credentials(connection, credentials)
            await self.repo.flush()
            # Stock and prices moved on while the shop was disconnected: everything goes out again.
            await self.repo.mark_connection_dirty(connection.id)
            await self.repo.request_sync(connection)
            return await self._view(connection)
        connection = ChannelConnection(
            id=uuid.uuid4(),
            organization_id=organization_id,
            channel=plugin.name,
            name=name,
            external_shop_id=shop_id,
            credentials_encrypted=self.cipher.encrypt_json(credentials),
            settings=_settings(None, channel_settings, category_map),
            status=ConnectionStatus.active,
            credentials_version=1,
        )
        self.repo.add(connection)
        await self.repo.flush()
        return await self._view(connection)

    async def list_connections(self, access: Access, organization_id: uuid.UUID) -> list[ConnectionView]:
        access.require(organization_id)
        return await self._views(await self.repo.connections(organization_id))

    async def get_connection(self, access: Access, connection_id: uuid.UUID) -> ConnectionView:
        connection = access.reach(await self.repo.connection(connection_id), "Connection")
        return await self._view(connection)

    async def update_connection(
        self, access: Access, connection_id: uuid.UUID, data: ConnectionUpdate
    ) -> ConnectionView:
        connection = await self._in_reach(access, connection_id, lock=True)
        if connection.status is ConnectionStatus.disconnected:
            raise Conflict(
                "This connection is disconnected. Connect the shop again with its credentials to use it.",
                field="connection_id",
            )
        credentials = channel_settings = None
        if data.credentials is not None or data.settings is not None:
            plugin = self._plugin_of(connection)
            display = plugin.capabilities.display_name
            if data.credentials is not None:
                credentials = _validated(plugin.credentials_schema, data.credentials, "credentials", display)
                shop_id = plugin.shop_id(credentials)
                if shop_id != connection.external_shop_id:
                    raise Invalid(
                        f"These credentials open another {display} shop ({shop_id or 'unknown'}) than this "
                        f"connection's ({connection.external_shop_id or 'unknown'}). "
                        "Connect that shop as a new connection instead.",
                        field="credentials",
                    )
            if data.settings is not None:
                channel_settings = _validated(
                    plugin.settings_schema, data.settings, "settings", display, exclude_unset=True
                )
        return await self._change(
            connection,
            name=data.name,
            credentials=credentials,
            channel_settings=channel_settings,
            category_map=_category_map(data.category_map) if data.category_map is not None else None,
            status=data.status,
        )

    async def _change(
        self,
        connection: ChannelConnection,
        *,
        name: str | None = None,
        credentials: dict[str, Any] | None = None,
        channel_settings: dict[str, Any] | None = None,
        category_map: dict[str, str] | None = None,
        status: SettableStatus | None = None,
    ) -> ConnectionView:
        """Apply checked changes to a locked, connected (not disconnected) connection; None leaves a field be.
        New credentials wake a connection whose authorisation expired."""
        dirty = woke = False
        if name is not None:
            connection.name = name
        if credentials is not None:
            self._store_credentials(connection, credentials)
            if connection.status is ConnectionStatus.auth_expired:
                connection.status = ConnectionStatus.active
                connection.last_error = None
                woke = True
        if channel_settings is not None:
            connection.settings = {**(connection.settings or {}), "channel": channel_settings}
        if category_map is not None and category_map != (connection.settings or {}).get("category_map"):
            connection.settings = {**(connection.settings or {}), "category_map": category_map}
            dirty = True
        if status is not None and status.value != connection.status.value:
            if status is SettableStatus.active:
                if connection.status is ConnectionStatus.auth_expired:
                    raise Conflict(
                        "The shop's authorisation has expired: send new credentials to resume this connection.",
                        field="credentials",
                    )
                connection.status = ConnectionStatus.active
                dirty = True  # what changed while paused was never sent
            else:
                connection.status = ConnectionStatus.paused
        await self.repo.flush()
        if dirty:
            await self.repo.mark_connection_dirty(connection.id)
        if (dirty or woke) and connection.status is ConnectionStatus.active:
            await self.repo.request_sync(connection)
        return await self._view(connection)

    async def disconnect(self, access: Access, connection_id: uuid.UUID) -> None:
        """Stop syncing and forget the credentials; the row and its listings stay, for history and reconnection.
        Disconnecting twice is a no-op."""
        connection = await self._in_reach(access, connection_id, lock=True)
        if connection.status is ConnectionStatus.disconnected:
            return
        connection.status = ConnectionStatus.disconnected
        connection.credentials_encrypted = None
        # A token refresh in flight saves only over the version it read: this makes it miss.
        connection.credentials_version += 1
        connection.token_expires_at = None
        await self.repo.flush()

    # -- helpers ----------------------------------------------------------------------------------------------

    async def _in_reach(self, access: Access, connection_id: uuid.UUID, *, lock: bool = False) -> ChannelConnection:
        return access.reach(await self.repo.connection(connection_id, lock=lock), "Connection", Role.admin)

    def _plugin_of(self, connection: ChannelConnection) -> ChannelPlugin:
        return _installed(self.registry, connection)

    def _sealer(self) -> StateSealer:
        if self.sealer is None:
            raise RuntimeError("ConnectionService needs a StateSealer to connect shops by authorisation")
        return self.sealer

    def _store_credentials(self, connection: ChannelConnection, credentials: dict[str, Any]) -> None:
        connection.credentials_encrypted = self.cipher.encrypt_json(credentials)
        connection.credentials_version = (connection.credentials_version or 0) + 1
        connection.token_expires_at = None  # the new token's expiry is learnt at its first refresh

    def _credential_fields(self, connection: ChannelConnection) -> list[str]:
        if connection.credentials_encrypted is None:
            return []
        try:
            return sorted(self.cipher.decrypt_json(connection.credentials_encrypted))
        except ValueError:
            return []  # under a key no longer configured: the shop has to be connected again

    async def _view(self, connection: ChannelConnection) -> ConnectionView:
        return (await self._views([connection]))[0]

    async def _views(self, connections: Sequence[ChannelConnection]) -> list[ConnectionView]:
        counts = await self.repo.listing_counts([c.id for c in connections])
        return [ConnectionView(c, self._credential_fields(c), counts[c.id]) for c in connections]


# -- listings -----------------------------------------------------------------------------------------------------


class ListingService:
    def __init__(self, repository: ChannelRepository, registry: ChannelRegistry) -> None:
        self.repo = repository
        self.registry = registry
        self.catalog = CatalogRepository(repository.session)
        self.inventory = InventoryRepository(repository.session)
        self.media = MediaRepository(repository.session)

    async def publish(self, access: Access, connection_id: uuid.UUID, data: ListingCreate) -> ListingView:
        """List a product on a shop: one row per variant on sale, checked against the channel's limits first.
        A product delisted from this shop earlier is listed again."""
        connection = await self._connection(access, connection_id, write=True)
        if connection.status is not ConnectionStatus.active:
            raise Conflict(_not_active(connection), field="connection_id")
        plugin = _installed(self.registry, connection)
        # Every change under a product takes the product's lock first (as the catalog does).
        product = await self.catalog.product(data.product_id, lock=True)
        if product is None or product.organization_id != connection.organization_id:
            raise NotFound("Product not found in this connection's organization.", field="product_id")
        if product.status is ProductStatus.archived:
            raise Conflict("This product is archived: restore it before listing it.", field="product_id")
        rows = await self.repo.rows(connection.id, product.id)
        if any(row.status is not ListingStatus.delisted for row in rows):
            raise Conflict(
                f"This product is already listed on “{connection.name}”. Change that listing instead.",
                field="product_id",
            )
        variants = (await self.catalog.variants([product.id]))[product.id]
        on_sale = [v for v in variants if v.archived_at is None]
        await self._check(plugin.capabilities, connection, product, on_sale, data.overrides)
        overrides = data.overrides.model_dump(mode="json")
        if rows:
            await self.repo.update_rows(
                [row.id for row in rows], status=ListingStatus.pending, overrides=overrides, channel_message=None
            )
        have = {row.variant_id for row in rows}
        self.repo.add(
            *(
                Listing(
                    id=uuid.uuid4(),
                    organization_id=connection.organization_id,
                    connection_id=connection.id,
                    product_id=product.id,
                    variant_id=variant.id,
                    status=ListingStatus.pending,
                    overrides=overrides,
                    desired_version=1,
                    pushed_version=0,
                    attempts=0,
                )
                for variant in on_sale
                if variant.id not in have
            )
        )
        await self.repo.flush()
        await self.repo.request_sync(connection)
        return await self._listing_view(connection, product.id)

    async def list_listings(
        self,
        access: Access,
        connection_id: uuid.UUID,
        *,
        status: ListingStatus | None,
        cursor: Cursor | None,
        limit: int,
    ) -> tuple[list[ListingView], Cursor | None]:
        """Most recently listed first, keyset-paginated over (first listed, product id)."""
        connection = await self._connection(access, connection_id)
        found = await self.repo.listed_products(connection.id, status=status, cursor=cursor, limit=limit + 1)
        next_cursor = None
        if len(found) > limit:
            found = found[:limit]
            next_cursor = Cursor(found[-1][1], found[-1][0])
        product_ids = [product_id for product_id, _ in found]
        rows = await self.repo.rows_of_products(connection.id, product_ids)
        return await self._views([(connection, rows[product_id]) for product_id in product_ids]), next_cursor

    async def get_listing(self, access: Access, connection_id: uuid.UUID, product_id: uuid.UUID) -> ListingView:
        connection = await self._connection(access, connection_id)
        return await self._listing_view(connection, product_id)

    async def listings_of_product(self, access: Access, product_id: uuid.UUID) -> list[ListingView]:
        product = access.reach(await self.catalog.product(product_id), "Product")
        by_connection = await self.repo.rows_of_product(product.id)
        connections = await self.repo.connections_by_id(list(by_connection))
        ordered = sorted(connections.values(), key=lambda c: (c.created_at, c.id))
        return await self._views([(c, by_connection[c.id]) for c in ordered])

    async def update_listing(
        self, access: Access, connection_id: uuid.UUID, product_id: uuid.UUID, overrides: ListingOverrides
    ) -> ListingView:
        """New overrides for every variant of the listing; unchanged overrides push nothing."""
        connection, product, rows = await self._rows(access, connection_id, product_id)
        if all(ListingOverrides.of(row.overrides) == overrides for row in rows):
            return await self._listing_view(connection, product_id)
        plugin = _installed(self.registry, connection)
        variants = (await self.catalog.variants([product.id]))[product.id]
        await self._check(
            plugin.capabilities, connection, product, [v for v in variants if v.archived_at is None], overrides
        )
        await self.repo.update_rows([row.id for row in rows], overrides=overrides.model_dump(mode="json"))
        await self._changed(connection)
        return await self._listing_view(connection, product_id)

    async def pause(self, access: Access, connection_id: uuid.UUID, product_id: uuid.UUID) -> ListingView:
        """Off sale on this shop (stock 0 there), the listing kept. Pausing a paused listing is a no-op."""
        connection, _product, rows = await self._rows(access, connection_id, product_id)
        if any(row.status is ListingStatus.delisted for row in rows):
            raise Conflict("This listing is delisted: list the product again before pausing it.", field="product_id")
        if rows_to_pause := [row.id for row in rows if row.status is not ListingStatus.paused]:
            await self.repo.update_rows(rows_to_pause, status=ListingStatus.paused)
            await self._changed(connection)
        return await self._listing_view(connection, product_id)

    async def resume(self, access: Access, connection_id: uuid.UUID, product_id: uuid.UUID) -> ListingView:
        """Back on sale after a pause; a listing in error or rejected is tried again. Live or pending: a no-op."""
        connection, _product, rows = await self._rows(access, connection_id, product_id)
        if any(row.status is ListingStatus.delisted for row in rows):
            raise Conflict(
                "This listing is delisted: list the product on this connection again to put it back on sale.",
                field="product_id",
            )
        stuck = (ListingStatus.paused, ListingStatus.error, ListingStatus.rejected)
        if rows_to_resume := [row.id for row in rows if row.status in stuck]:
            await self.repo.update_rows(rows_to_resume, status=ListingStatus.pending, channel_message=None)
            await self._changed(connection)
        return await self._listing_view(connection, product_id)

    async def delist(self, access: Access, connection_id: uuid.UUID, product_id: uuid.UUID) -> ListingView:
        """Taken off the shop (the channel's delist); the rows stay, so it can be listed again. Idempotent."""
        connection, _product, rows = await self._rows(access, connection_id, product_id)
        if rows_to_delist := [row.id for row in rows if row.status is not ListingStatus.delisted]:
            await self.repo.update_rows(rows_to_delist, status=ListingStatus.delisted)
            await self._changed(connection)
        return await self._listing_view(connection, product_id)

    # -- helpers ----------------------------------------------------------------------------------------------

    async def _connection(self, access: Access, connection_id: uuid.UUID, *, write: bool = False) -> ChannelConnection:
        connection = access.reach(await self.repo.connection(connection_id), "Connection")
        if write and connection.status is ConnectionStatus.disconnected:
            raise Conflict(_not_active(connection), field="connection_id")
        return connection

    async def _rows(
        self, access: Access, connection_id: uuid.UUID, product_id: uuid.UUID
    ) -> tuple[ChannelConnection, Product, list[Listing]]:
        """A listing about to change: its connection, its product (locked) and its rows."""
        connection = await self._connection(access, connection_id, write=True)
        product = await self.catalog.product(product_id, lock=True)
        rows = await self.repo.rows(connection.id, product_id) if product is not None else []
        if product is None or not rows:
            raise NotFound(NOT_LISTED, field="product_id")
        return connection, product, rows

    async def _changed(self, connection: ChannelConnection) -> None:
        # A paused or expired shop is synced when it comes back (which marks everything dirty again).
        if connection.status is ConnectionStatus.active:
            await self.repo.request_sync(connection)

    async def _check(
        self,
        capabilities: Capabilities,
        connection: ChannelConnection,
        product: Product,
        variants: Sequence[Variant],
        overrides: ListingOverrides,
    ) -> None:
        """The listing as the sync engine would send it, against the channel's limits: 422 with every problem."""
        levels = await self.inventory.levels([v.id for v in variants])
        drafts = [
            VariantDraft(
                sku=v.sku,
                name=v.name,
                price_vnd=overrides.price_rule.apply(v.price_vnd),
                stock=overrides.stock_rule.apply(
                    _available(levels.get(v.id)), channel_max=capabilities.limits.stock_max
                ),
                weight_grams=v.weight_grams,
                unit=v.unit.value,
            )
            for v in variants
        ]
        category_map: Mapping[str, str] = (connection.settings or {}).get("category_map") or {}
        photos = (await self.media.assets_of_products([product.id]))[product.id]
        problems = check_listing(
            capabilities,
            title=overrides.title or product.name,
            # As the engine sends it: an empty override clears the description on this channel.
            description=overrides.description if overrides.description is not None else product.description,
            category=overrides.category or category_map.get(product.category.value),
            attributes=overrides.attributes,
            variants=drafts,
            image_count=len(photos),
        )
        if problems:
            problems = [
                Problem(p.field, missing_category(capabilities, product.category.value)) if p.field == "category" else p
                for p in problems
            ]
            raise Invalid(
                problems[0].message, field=problems[0].field, details={"problems": [asdict(p) for p in problems]}
            )

    async def _listing_view(self, connection: ChannelConnection, product_id: uuid.UUID) -> ListingView:
        rows = await self.repo.rows(connection.id, product_id)
        if not rows:
            raise NotFound(NOT_LISTED, field="product_id")
        return (await self._views([(connection, rows)]))[0]

    async def _views(self, listings: Sequence[tuple[ChannelConnection, list[Listing]]]) -> list[ListingView]:
        product_ids = list({rows[0].product_id for _, rows in listings})
        products = await self.repo.products(product_ids)
        variants = {v.id: v for vs in (await self.catalog.variants(product_ids)).values() for v in vs}
        levels = await self.inventory.levels(list(variants))
        return [
            _listing_view(connection, rows, products[rows[0].product_id], variants, levels, self.registry)
            for connection, rows in listings
        ]


# -- pure helpers -------------------------------------------------------------------------------------------------


def _listing_view(
    connection: ChannelConnection,
    rows: Sequence[Listing],
    product: Product,
    variants: Mapping[uuid.UUID, Variant],
    levels: Mapping[uuid.UUID, StockLevel],
    registry: ChannelRegistry,
) -> ListingView:
    overrides = ListingOverrides.of(rows[0].overrides)
    status = product_status([row.status for row in rows])
    # A channel that is no longer installed still shows its listings, without its stock ceiling.
    channel_max = (
        registry.plugins[connection.channel].capabilities.limits.stock_max if connection.channel in registry else None
    )
    offered = product.status is ProductStatus.active and status not in (ListingStatus.paused, ListingStatus.delisted)
    ordered = sorted(rows, key=lambda r: (variants[r.variant_id].position, variants[r.variant_id].created_at, r.id))
    row_views = [
        ListingRowView(
            row=row,
            variant=variants[row.variant_id],
            desired_price_vnd=overrides.price_rule.apply(variants[row.variant_id].price_vnd),
            desired_stock=overrides.stock_rule.apply(_available(levels.get(row.variant_id)), channel_max=channel_max)
            if offered and variants[row.variant_id].archived_at is None
            else 0,
        )
        for row in ordered
    ]
    return ListingView(connection, product.id, status, _message(row_views, status), overrides, row_views)


def _message(rows: Sequence[ListingRowView], status: ListingStatus) -> str | None:
    """What the channel said about the rows in the listing's status: once if they agree, per SKU if not."""
    said = [(r.variant.sku, r.row.channel_message) for r in rows if r.row.status is status and r.row.channel_message]
    if not said:
        return None
    if len({message for _, message in said}) == 1:
        return said[0][1]
    return " ".join(f"{sku}: {message}" for sku, message in said)


def _available(level: StockLevel | None) -> int:
    return level.on_hand - level.reserved if level is not None else 0


def _not_active(connection: ChannelConnection) -> str:
    return {
        ConnectionStatus.paused: f"The connection “{connection.name}” is paused: resume it first.",
        ConnectionStatus.auth_expired: (
            f"The shop's authorisation on “{connection.name}” has expired: enter new credentials on the "
            "connection first."
        ),
        ConnectionStatus.disconnected: (
            f"The connection “{connection.name}” is disconnected: connect the shop again first."
        ),
    }.get(connection.status, f"The connection “{connection.name}” is not active.")


_NOT_OUR_STATE = (
    "This authorisation link is not valid: it was changed on the way or does not come from this server. "
    "Start connecting the shop again from AgriMarket."
)
_STATE_USED = (
    "This authorisation link has already connected the shop; it works once. To connect again, start again from "
    "AgriMarket."
)


def _oauth(plugin: ChannelPlugin) -> OAuthPlugin:
    if not isinstance(plugin, OAuthPlugin):
        display = plugin.capabilities.display_name
        raise Invalid(
            f"{display} shops are connected by entering the shop's credentials, not through {display}'s "
            "authorisation page. Connect it with its credentials instead.",
            field="channel",
        )
    return plugin


def _required(public_url: str | None, display: str) -> str:
    if public_url is None:
        raise Conflict(
            f"This server does not know its public address, so {display} could not send you back to it. "
            "Ask the administrator to set AGRIMARKET_PUBLIC_BASE_URL."
        )
    return public_url


def _settings(
    current: Mapping[str, Any] | None, channel_settings: dict[str, Any] | None, category_map: dict[str, str] | None
) -> dict[str, Any]:
    """A connection's stored settings with the given parts replaced; a part not given stays as it is."""
    current = current or {}
    return {
        "channel": channel_settings if channel_settings is not None else dict(current.get("channel") or {}),
        "category_map": category_map if category_map is not None else dict(current.get("category_map") or {}),
    }


def _installed(registry: ChannelRegistry, connection: ChannelConnection) -> ChannelPlugin:
    if connection.channel not in registry:
        raise Conflict(
            f"The {connection.channel!r} channel is not installed on this server any more, so this shop cannot be "
            "changed. Ask the administrator to install it again.",
            field="channel",
        )
    return registry.get(connection.channel)


def _channel_view(plugin: ChannelPlugin) -> ChannelView:
    return ChannelView(plugin, _field_names(plugin.credentials_schema), _field_names(plugin.settings_schema))


def _field_names(schema: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in schema.model_fields.items()]


def _category_map(category_map: Mapping[Any, str]) -> dict[str, str]:
    return {str(getattr(category, "value", category)): value for category, value in sorted(category_map.items())}


def _validated(
    schema: type[BaseModel], value: Mapping[str, Any], prefix: str, display: str, *, exclude_unset: bool = False
) -> dict[str, Any]:
    """Checked by the channel's own schema; refusals name the field (``credentials.access_token``)."""
    try:
        model = schema.model_validate(dict(value))
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_url=False, include_input=False, include_context=False):
            field = ".".join([prefix, *(str(part) for part in error["loc"])])
            if error["type"] == "missing":
                message = f"Enter {field.removeprefix(prefix + '.')}: {display} needs it."
            else:
                message = str(error["msg"])
            errors.append({"field": field, "message": message})
        first = errors[0]
        raise Invalid(
            f"{first['field']}: {first['message']}", field=first["field"], details={"errors": errors}
        ) from None
    dumped = model.model_dump(mode="python", exclude_unset=exclude_unset, exclude_none=not exclude_unset)
    plain: dict[str, Any] = to_jsonable_python(_revealed(dumped))
    return plain


def _revealed(value: Any) -> Any:
    """Secret fields as their values: a schema may wrap a token in ``SecretStr``, which JSON would mask."""
    if isinstance(value, SecretStr | SecretBytes):
        secret = value.get_secret_value()
        return secret.decode() if isinstance(secret, bytes) else secret
    if isinstance(value, dict):
        return {key: _revealed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_revealed(item) for item in value]
    return value
