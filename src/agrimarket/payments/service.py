"""Storefront rules: what the page sells, opening a checkout (stock held first), and bringing a checkout and its order
in line with what Stripe says. Never commits: the request or the job owns each transaction.

A checkout's life, in our terms (Stripe's session is the truth, re-read before anything changes):

- **open**: its lines' stock is held (``checkout:<id>:<line>:hold``); marketplaces are told the lower quantity.
- **complete**: the hold is carried over to the order, in one transaction under the stock levels' locks: the hold is
  released and the order pipeline reserves the same units for the order (``order:<order>:<line>:reserve``), so the
  stock is never held twice nor free in between. The order is the session's id on the storefront connection, ``paid``
  (``unpaid`` while an asynchronous payment is pending).
- **expired** (or never created): the hold is released.
- **refunded** in full: the order is cancelled (stock back to available) or, once shipped, returned (back on hand).

What a checkout completes without (its hold taken meanwhile by an order on another channel, see ``holds.py``) is
recorded on the order as oversold; ``AGRIMARKET_STOREFRONT_OVERSOLD_POLICY`` says whether it is then refunded.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agrimarket.channels.base import ChannelOrder, ChannelOrderLine
from agrimarket.channels.rules import ListingOverrides
from agrimarket.config import OversoldPolicy
from agrimarket.errors import Conflict, Invalid, NotFound
from agrimarket.inventory.repository import InventoryRepository
from agrimarket.inventory.service import InventoryService
from agrimarket.models import (
    Certification,
    ChannelConnection,
    CheckoutState,
    HoldState,
    Order,
    OrderStatus,
    Organization,
    Product,
    StorefrontCheckout,
    StorefrontCheckoutLine,
    Variant,
    utcnow,
)
from agrimarket.observability import get_logger
from agrimarket.orders.repository import OrderRepository
from agrimarket.orders.service import LIVE, SOLD, TERMINAL, OrderService
from agrimarket.payments.holds import hold_reference, release_lines
from agrimarket.payments.repository import ShopRow, StorefrontRepository
from agrimarket.sandbox.stripe import MAX_AMOUNT

log = get_logger(__name__)

MAX_LINE_QUANTITY = 99  # per product kind in one checkout
MAX_LINES = 20
SHOP_ROWS = 60  # the page stays within its weight budget


# -- the page -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShopVariant:
    variant: Variant
    price_vnd: int
    available: int


@dataclass
class ShopProduct:
    product: Product
    variants: list[ShopVariant] = field(default_factory=list)
    certifications: list[Certification] = field(default_factory=list)


@dataclass(frozen=True)
class Shop:
    connection: ChannelConnection
    organization: Organization
    products: list[ShopProduct]


def price_of(row: ShopRow) -> int:
    """The storefront's price: the catalogue's, with the listing's own price rule, as any channel shows it."""
    return ListingOverrides.of(row.listing.overrides).price_rule.apply(row.variant.price_vnd)


def available_of(row: ShopRow) -> int:
    return max(row.level.available, 0) if row.level is not None else 0


# -- opening a checkout ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shortfall:
    name: str
    wanted: int
    available: int


class NotEnoughStock(Conflict):
    """What the buyer asked for is no longer all there: nothing is held and no session made."""

    def __init__(self, shortfalls: Sequence[Shortfall]) -> None:
        names = ", ".join(f"{s.name} ({s.available} left)" for s in shortfalls)
        super().__init__(f"Not enough stock: {names}.")
        self.shortfalls = list(shortfalls)


@dataclass(frozen=True)
class OpenedCheckout:
    checkout: StorefrontCheckout
    lines: list[StorefrontCheckoutLine]
    organization_name: str


# -- what Stripe says -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StripeTruth:
    """A session as Stripe has it now (``status`` ``missing``: Stripe does not know it)."""

    status: str  # open, complete, expired, missing
    payment_status: str = "unpaid"  # paid, unpaid, no_payment_required
    payment_intent_id: str | None = None
    amount_total: int = 0
    buyer_name: str | None = None
    refunded_vnd: int = 0
    payment_failed: bool = False  # an asynchronous payment failed (its event said so)
    created: int | None = None


@dataclass(frozen=True)
class SyncResult:
    checkout: StorefrontCheckout
    order: Order | None = None
    refund_due: bool = False  # the oversold policy asks for a refund that is not made yet


class StorefrontService:
    def __init__(self, repo: StorefrontRepository) -> None:
        self.repo = repo
        self.inventory = InventoryService(InventoryRepository(repo.session))
        self.orders = OrderService(OrderRepository(repo.session), self.inventory)

    # -- the page -------------------------------------------------------------------------------------------------

    async def shop(self, key: str) -> Shop:
        connection = await self.repo.storefront(key)
        organization = await self.repo.organization(connection.organization_id) if connection is not None else None
        if connection is None or organization is None:
            raise NotFound("There is no shop at this address.")
        rows = await self.repo.shop_rows(connection.id, SHOP_ROWS)
        products: dict[uuid.UUID, ShopProduct] = {}
        for row in rows:
            shown = products.setdefault(row.product.id, ShopProduct(row.product))
            shown.variants.append(ShopVariant(row.variant, price_of(row), available_of(row)))
        for product_id, found in (await self.repo.certifications(list(products))).items():
            products[product_id].certifications = found
        return Shop(connection, organization, list(products.values()))

    # -- opening a checkout ---------------------------------------------------------------------------------------

    async def open_checkout(
        self, connection: ChannelConnection, quantities: Mapping[uuid.UUID, int], *, locale: str, minutes: int
    ) -> OpenedCheckout:
        """Hold the stock for a new checkout (state ``creating``), or refuse with what is short. The levels are
        locked in one order, so two buyers of the last unit queue and the second is told it is gone."""
        wanted = {variant_id: qty for variant_id, qty in quantities.items() if qty > 0}
        if not wanted:
            raise Invalid("Choose how many of something you want to buy.", field="quantity")
        if len(wanted) > MAX_LINES or any(qty > MAX_LINE_QUANTITY for qty in wanted.values()):
            raise Invalid(f"At most {MAX_LINE_QUANTITY} of each, {MAX_LINES} kinds at once.", field="quantity")
        rows = await self.repo.sellable(connection.id, sorted(wanted))
        if len(rows) != len(wanted):
            raise NotFound("Something you chose is no longer on sale here. Reload the page.")
        organization = await self.repo.organization(connection.organization_id)
        assert organization is not None
        shortfalls: list[Shortfall] = []
        for row in sorted(rows, key=lambda r: r.variant.id):
            level = await self.inventory.repo.level_for_update(row.variant.id)
            available = max(level.available, 0) if level is not None else 0
            if available < wanted[row.variant.id]:
                shortfalls.append(Shortfall(_line_name(row), wanted[row.variant.id], available))
        if shortfalls:
            raise NotEnoughStock(shortfalls)
        now = utcnow()
        prices = {row.variant.id: price_of(row) for row in rows}
        total = sum(prices[variant_id] * qty for variant_id, qty in wanted.items())
        if total > MAX_AMOUNT:
            raise Invalid(f"One card payment is at most {MAX_AMOUNT:,} ₫; buy in two orders.", field="quantity")
        checkout = StorefrontCheckout(
            id=uuid.uuid4(),
            organization_id=connection.organization_id,
            connection_id=connection.id,
            state=CheckoutState.creating,
            hold=HoldState.held,
            total_vnd=total,
            locale=locale,
            expires_at=now + timedelta(minutes=minutes),
        )
        self.repo.add(checkout)
        lines = [
            StorefrontCheckoutLine(
                id=uuid.uuid4(),
                checkout_id=checkout.id,
                variant_id=row.variant.id,
                product_id=row.product.id,
                sku=row.variant.sku,
                name=_line_name(row)[:300],
                quantity=wanted[row.variant.id],
                unit_price_vnd=prices[row.variant.id],
                held_quantity=0,
            )
            for row in sorted(rows, key=lambda r: r.variant.id)
        ]
        self.repo.add(*lines)
        await self.repo.flush()
        for line in lines:
            change = await self.inventory.reserve(
                line.variant_id,
                line.quantity,
                reference=hold_reference(checkout.id, line.id),
                reason=f"Storefront checkout {checkout.id}",
            )
            line.held_quantity = change.applied
        await self.repo.flush()
        return OpenedCheckout(checkout, lines, organization.name)

    async def attach_session(self, checkout_id: uuid.UUID, session_id: str, url: str, expires_at: datetime) -> None:
        checkout = await self.repo.checkout(checkout_id, lock=True)
        if checkout is None:  # pragma: no cover - checkouts are never deleted
            raise NotFound("Checkout not found.")
        checkout.session_id = session_id
        checkout.session_url = url
        checkout.expires_at = expires_at
        if checkout.state is CheckoutState.creating:
            checkout.state = CheckoutState.open
        await self.repo.flush()

    async def fail_checkout(self, checkout_id: uuid.UUID, message: str) -> None:
        """The session could not be made: give the stock back at once."""
        checkout = await self.repo.checkout(checkout_id, lock=True)
        if checkout is None or checkout.state is not CheckoutState.creating:
            return
        await self._release(checkout, "The storefront checkout could not start")
        checkout.state = CheckoutState.failed
        checkout.last_error = message[:2000]
        await self.repo.flush()

    # -- what Stripe says -----------------------------------------------------------------------------------------

    async def sync(
        self, checkout_id: uuid.UUID, truth: StripeTruth, *, policy: OversoldPolicy, now: datetime | None = None
    ) -> SyncResult:
        """Bring the checkout, its hold and its order in line with Stripe's session. Safe to repeat, and with
        events in any order: it acts on the session as it is now, never on what one event said."""
        now = now or utcnow()
        checkout = await self.repo.checkout(checkout_id, lock=True)
        if checkout is None:
            raise NotFound("Checkout not found.")
        if truth.status in ("expired", "missing") or (
            truth.status == "open" and checkout.state is CheckoutState.failed
        ):
            if checkout.order_id is None:
                await self._release(checkout, "The storefront checkout expired")
                if checkout.state is not CheckoutState.failed:
                    checkout.state = CheckoutState.expired
            await self.repo.flush()
            return SyncResult(checkout)
        if truth.status != "complete":
            if checkout.state is CheckoutState.creating:
                checkout.state = CheckoutState.open
            await self.repo.flush()
            return SyncResult(checkout)
        if truth.payment_intent_id:
            checkout.payment_intent_id = truth.payment_intent_id
        connection = await self.repo.connection(checkout.connection_id)
        if connection is None:  # pragma: no cover - connections are kept while they have checkouts (RESTRICT)
            raise NotFound("The storefront is gone.")
        lines = await self.repo.lines(checkout.id)
        existing = await self.repo.order(checkout.order_id) if checkout.order_id is not None else None
        status = self._status(truth, existing)
        if existing is None:
            # Carried over: the hold is released and the same units reserved for the order, under the same locks.
            await self.orders.repo.lock_levels([line.variant_id for line in lines])
            await self._release(checkout, "Carried over to the storefront order", converted=True)
        result = await self.orders.ingest(connection, self._order(checkout, lines, truth, status, now))
        order = result.order
        checkout.order_id = order.id
        checkout.state = CheckoutState.complete
        await self.repo.flush()
        refund_due = (
            policy is OversoldPolicy.refund
            and order.oversold
            and order.status in LIVE
            and truth.payment_status in ("paid", "no_payment_required")
            and truth.refunded_vnd < truth.amount_total
        )
        if result.created and order.oversold:
            log.warning(
                "storefront_order_oversold", order_id=str(order.id), checkout_id=str(checkout.id), policy=policy.value
            )
        return SyncResult(checkout, order, refund_due)

    async def refunded(self, checkout_id: uuid.UUID, refund_id: str) -> Order | None:
        """Our refund went through: note it, and cancel the order (its held stock back to available)."""
        checkout = await self.repo.checkout(checkout_id, lock=True)
        if checkout is None:
            return None
        checkout.refund_id = refund_id
        if checkout.order_id is None:
            return None
        order = await self.repo.order(checkout.order_id)
        if order is not None and order.status not in TERMINAL and order.status not in SOLD:
            return (await self.orders.advance(order.id, OrderStatus.cancelled)).order
        return order

    def _status(self, truth: StripeTruth, existing: Order | None) -> OrderStatus:
        if truth.payment_failed:
            return OrderStatus.cancelled
        if truth.amount_total > 0 and truth.refunded_vnd >= truth.amount_total:
            # A refund in full: before shipping the order is cancelled; after, the goods are taken as come back.
            return OrderStatus.returned if existing is not None and existing.status in SOLD else OrderStatus.cancelled
        if truth.payment_status in ("paid", "no_payment_required"):
            return OrderStatus.paid
        return OrderStatus.unpaid

    def _order(
        self,
        checkout: StorefrontCheckout,
        lines: Sequence[StorefrontCheckoutLine],
        truth: StripeTruth,
        status: OrderStatus,
        now: datetime,
    ) -> ChannelOrder:
        platform_status = truth.payment_status if status is not OrderStatus.cancelled else "refunded_or_failed"
        return ChannelOrder(
            external_id=checkout.session_id or str(checkout.id),
            status=status,
            platform_status=f"{truth.status}/{platform_status}",
            created_at=checkout.created_at,
            updated_at=now,
            lines=[
                ChannelOrderLine(
                    external_line_id=str(line.id),
                    sku=line.sku,
                    quantity=line.quantity,
                    unit_price_vnd=line.unit_price_vnd,
                    external_item_id=str(line.product_id),
                    external_sku_id=line.sku,
                    name=line.name,
                )
                for line in lines
            ],
            total_vnd=truth.amount_total or checkout.total_vnd,
            buyer_name=truth.buyer_name,
            raw={
                "checkout_id": str(checkout.id),
                "session_id": checkout.session_id,
                "payment_intent": truth.payment_intent_id,
                "payment_status": truth.payment_status,
                "refunded_vnd": truth.refunded_vnd,
            },
        )

    async def _release(self, checkout: StorefrontCheckout, reason: str, *, converted: bool = False) -> None:
        lines = await self.repo.lines(checkout.id)
        await release_lines(self.inventory, checkout, lines, reason)
        if converted:
            checkout.hold = HoldState.converted
        elif checkout.hold is HoldState.held:
            checkout.hold = HoldState.released
        await self.repo.flush()


def _line_name(row: ShopRow) -> str:
    name = row.product.name
    return f"{name} – {row.variant.name}" if row.variant.name and row.variant.name != name else name
