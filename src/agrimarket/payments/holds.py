"""The stock a storefront checkout holds, and how an order on any channel takes it back.

A checkout reserves its lines' stock when its Stripe session is created (movement references
``checkout:<checkout id>:<line id>:hold`` and ``…:release``, so each happens once), so every marketplace is told
the lower quantity at once. The hold is *soft*: a buyer at the card form has promised nothing yet, while a marketplace
order is already placed (and cancelling it costs the shop its rating). So when an order on any channel finds too little
stock, :func:`make_room` takes the newest checkouts' holds on that variant first; those checkouts are marked
``preempted`` and their sessions expired through Stripe (``payments.expire_checkout``). A buyer who pays in the
moment before that lands gets a storefront order flagged oversold, refunded or kept as
``AGRIMARKET_STOREFRONT_OVERSOLD_POLICY`` says.

Called by the order pipeline under the stock level's lock; never commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from agrimarket.inventory.service import InventoryService
from agrimarket.models import HoldState, StorefrontCheckout, StorefrontCheckoutLine
from agrimarket.observability import get_logger
from agrimarket.payments.repository import StorefrontRepository
from agrimarket.worker import enqueue

log = get_logger(__name__)

EXPIRE_KIND = "payments.expire_checkout"


def hold_reference(checkout_id: uuid.UUID, line_id: uuid.UUID) -> str:
    return f"checkout:{checkout_id}:{line_id}:hold"


def release_reference(checkout_id: uuid.UUID, line_id: uuid.UUID) -> str:
    return f"checkout:{checkout_id}:{line_id}:release"


async def release_lines(
    inventory: InventoryService,
    checkout: StorefrontCheckout,
    lines: Sequence[StorefrontCheckoutLine],
    reason: str,
) -> int:
    """Give back what the checkout's lines still hold (once per line, whoever asks). Returns the units freed."""
    freed = 0
    for line in sorted(lines, key=lambda x: (str(x.variant_id), str(x.id))):
        if line.held_quantity <= 0:
            continue
        change = await inventory.release(
            line.variant_id, line.held_quantity, reference=release_reference(checkout.id, line.id), reason=reason
        )
        freed += change.applied
        line.held_quantity = 0
    return freed


async def make_room(
    session: AsyncSession, inventory: InventoryService, variant_id: uuid.UUID, needed: int, reference: str
) -> int:
    """Free up to ``needed − available`` units of the variant held by open storefront checkouts, newest first, for
    the stock effect ``reference`` about to be applied. The level is locked by the caller. Returns the units freed."""
    if needed <= 0:
        return 0
    level = await inventory.repo.level_for_update(variant_id)  # locked already: refreshed, not waited for
    short = needed - max(level.available, 0) if level is not None else 0
    if short <= 0 or await inventory.repo.movement_by_reference(reference) is not None:
        return 0
    freed = 0
    for line, checkout in await StorefrontRepository(session).holds_on(variant_id):
        if freed >= short:
            break
        change = await inventory.release(
            variant_id,
            line.held_quantity,
            reference=release_reference(checkout.id, line.id),
            reason="A storefront checkout gave way to an order",
        )
        freed += change.applied
        line.held_quantity = 0
        if checkout.hold is HoldState.held:
            checkout.hold = HoldState.preempted
            await enqueue(
                session,
                EXPIRE_KIND,
                {"checkout_id": str(checkout.id)},
                dedupe_key=f"{EXPIRE_KIND}:{checkout.id}",
                organization_id=checkout.organization_id,
            )
        log.info("checkout_hold_preempted", checkout_id=str(checkout.id), variant_id=str(variant_id), units=freed)
    await session.flush()
    return freed
