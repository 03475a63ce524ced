"""Stripe's events: kept in the inbox once, then handled by a job that re-reads the session from Stripe and brings the
checkout and its order in line (``StorefrontService.sync``), as the order pipeline re-fetches a marketplace's order
before anything changes. A duplicate is a no-op at the inbox; an event out of order changes nothing the session does
not say now.

- ``checkout.session.completed`` / ``async_payment_succeeded``: the order, paid, with the checkout's hold carried
  over; oversold, it is refunded or kept as the policy says.
- ``checkout.session.expired``: the hold released.
- ``checkout.session.async_payment_failed``: the order cancelled.
- ``charge.refunded``, ``refund.created``, ``refund.updated``: refunded in full, the order is cancelled (or returned
  once shipped).
- anything else: handled, with nothing to do.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.channels.errors import ChannelError, ChannelNotFound, Rejected
from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.models import CheckoutState, StorefrontCheckout, utcnow
from agrimarket.observability import counter, get_logger
from agrimarket.orders.repository import OrderRepository
from agrimarket.payments.gateway import StripeConfig, StripeGateway, gateway, idempotency_key, stripe_config
from agrimarket.payments.plugin import REFUND_METADATA_KEY, refund_key
from agrimarket.payments.repository import STRIPE_SOURCE, StorefrontRepository
from agrimarket.payments.service import StorefrontService, StripeTruth
from agrimarket.worker import RetryLater, enqueue

log = get_logger(__name__)

HANDLE_KIND = "payments.stripe_events"
SWEEP_KIND = "payments.sweep_checkouts"
BATCH_SIZE = 50
SWEEP_GRACE = timedelta(minutes=5)  # Stripe's own expiry event gets this long before we ask
SWEEP_BATCH = 100
CREATING_PATIENCE = timedelta(minutes=2)  # a session being created this long ago has failed to be
SESSION_EVENTS = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.expired",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
    }
)
PAYMENT_EVENTS = frozenset({"charge.refunded", "refund.created", "refund.updated", "charge.refund.updated"})
HANDLED = SESSION_EVENTS | PAYMENT_EVENTS

STRIPE_EVENTS = counter(
    "stripe_events",
    "Stripe events received, per outcome (stored, duplicate, invalid_signature, malformed).",
    ["outcome"],
)


@dataclass(frozen=True)
class ReadEvent:
    """What the inbox keeps of a verified event, read at receipt."""

    event_id: str
    event_type: str
    session_id: str | None
    checkout_id: str | None
    payment_intent_id: str | None


def read_event(body: bytes) -> ReadEvent:
    """The ids in a verified event's body; raises ValueError when it is not a Stripe event."""
    data = json.loads(body)
    if not isinstance(data, dict) or data.get("object") != "event" or not isinstance(data.get("id"), str):
        raise ValueError("not a Stripe event")
    event_type = str(data.get("type") or "")
    envelope = data.get("data")
    obj = envelope.get("object") if isinstance(envelope, dict) else None
    if not isinstance(obj, dict):
        raise ValueError("the event carries no object")
    session_id = obj.get("id") if obj.get("object") == "checkout.session" else None
    found = obj.get("metadata")
    metadata: dict[str, Any] = found if isinstance(found, dict) else {}
    checkout_id = metadata.get("checkout_id") or (obj.get("client_reference_id") if session_id else None)
    intent = obj.get("payment_intent") if obj.get("object") != "payment_intent" else obj.get("id")
    return ReadEvent(
        event_id=str(data["id"]),
        event_type=event_type,
        session_id=session_id if isinstance(session_id, str) else None,
        checkout_id=str(checkout_id) if checkout_id else None,
        payment_intent_id=intent if isinstance(intent, str) else None,
    )


async def request_handling(session: AsyncSession) -> None:
    """Make sure a run of the handler is queued (one at a time is enough: it reads every unhandled event)."""
    await enqueue(session, HANDLE_KIND, {}, dedupe_key=HANDLE_KIND, dedupe_while_running=False)


async def receive(session: AsyncSession, event: ReadEvent, body: bytes, headers: Mapping[str, str]) -> uuid.UUID | None:
    """Keep a verified event once (insert-or-nothing on its Stripe id) and queue its handling for a new row only, in
    the caller's transaction. The new row's id, or None for a duplicate."""
    from agrimarket.webhooks.repository import InboxRepository  # the webhooks package imports the order pipeline

    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "source": STRIPE_SOURCE,
        "external_id": event.event_id[:200],
        # The generic drain (orders.drain_inbox) reads events by connection; Stripe's are this package's to handle.
        "connection_id": None,
        "event_type": event.event_type[:100],
        "order_ids": [event.session_id] if event.session_id else [],
        "headers": dict(headers),
        "body": body,
        "received_at": utcnow(),
        "attempts": 0,
    }
    inserted = await InboxRepository(session).insert(values)
    if inserted is not None:
        await request_handling(session)
    return inserted


@dataclass
class HandleReport:
    events: int = 0
    checkouts: int = 0
    ignored: int = 0
    unknown: int = 0
    refunds: int = 0


class StripeEvents:
    """Handles what the inbox holds of Stripe's events, and the jobs that follow from them."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        http: httpx.AsyncClient,
        config: StripeConfig | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.http = http
        self.config = config or stripe_config(settings)

    def _stripe(self) -> StripeGateway:
        return gateway(self.http, self.config)

    async def handle_pending(self, batch_size: int = BATCH_SIZE) -> HandleReport:
        report = HandleReport()
        while True:
            async with transaction(self.sessionmaker) as session:
                events = await StorefrontRepository(session).unhandled_events(batch_size)
            if not events:
                return report
            report.events += len(events)
            # One sync per checkout however many of its events came: each reads the session as it is now.
            by_checkout: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
            failed_payment: set[uuid.UUID] = set()
            done: list[uuid.UUID] = []
            unknown: list[uuid.UUID] = []
            for event in events:
                if event.event_type not in HANDLED:
                    done.append(event.id)
                    report.ignored += 1
                    continue
                try:
                    read = read_event(event.body)
                    checkout_id = await self._checkout_of(read)
                except ChannelError as exc:
                    await self._failed([event.id], exc)
                    raise RetryLater(f"Stripe did not answer: {exc.message}") from exc
                except ValueError:
                    checkout_id = None
                if checkout_id is None:
                    unknown.append(event.id)
                    continue
                by_checkout[checkout_id].append(event.id)
                if read.event_type == "checkout.session.async_payment_failed":
                    failed_payment.add(checkout_id)
            for checkout_id, event_ids in by_checkout.items():
                try:
                    await self.sync_checkout(checkout_id, payment_failed=checkout_id in failed_payment)
                except ChannelError as exc:
                    await self._failed(event_ids, exc)
                    raise RetryLater(f"Stripe did not answer: {exc.message}") from exc
                done.extend(event_ids)
                report.checkouts += 1
            report.unknown += len(unknown)
            async with transaction(self.sessionmaker) as session:
                repo = OrderRepository(session)
                now = utcnow()
                await repo.mark_handled(done, now)
                await repo.mark_handled(unknown, now, "No storefront checkout of ours is named in this event.")

    async def _failed(self, event_ids: list[uuid.UUID], exc: ChannelError) -> None:
        async with transaction(self.sessionmaker) as session:
            await OrderRepository(session).note_failure(event_ids, f"Stripe: {exc.message}")

    async def _checkout_of(self, read: ReadEvent) -> uuid.UUID | None:
        async with transaction(self.sessionmaker) as session:
            repo = StorefrontRepository(session)
            found: StorefrontCheckout | None = None
            if read.session_id:
                found = await repo.checkout_of_session(read.session_id)
            if found is None and read.checkout_id:
                try:
                    found = await repo.checkout(uuid.UUID(read.checkout_id))
                except ValueError:
                    found = None
            if found is None and read.payment_intent_id:
                found = await repo.checkout_of_payment(read.payment_intent_id)
            if found is not None:
                return found.id
        if read.payment_intent_id and read.session_id is None:
            # A refund before we handled the payment: Stripe knows which session the payment was for.
            for session_object in await self._stripe().sessions_of_payment(read.payment_intent_id):
                async with transaction(self.sessionmaker) as session:
                    found = await StorefrontRepository(session).checkout_of_session(str(session_object["id"]))
                if found is not None:
                    return found.id
        return None

    async def truth(self, checkout: StorefrontCheckout, *, payment_failed: bool = False) -> StripeTruth:
        """The session as Stripe has it now, and what has been refunded of its payment."""
        if checkout.session_id is None:
            return StripeTruth(status="missing")
        stripe = self._stripe()
        try:
            session = await stripe.session(checkout.session_id)
        except ChannelNotFound:
            return StripeTruth(status="missing")
        intent = session.get("payment_intent")
        intent_id = intent if isinstance(intent, str) else (intent or {}).get("id")
        details = session.get("customer_details") or {}
        return StripeTruth(
            status=str(session.get("status") or "open"),
            payment_status=str(session.get("payment_status") or "unpaid"),
            payment_intent_id=intent_id,
            amount_total=int(session.get("amount_total") or 0),
            buyer_name=details.get("name") if isinstance(details, dict) else None,
            refunded_vnd=await stripe.refunded_vnd(intent_id) if intent_id else 0,
            payment_failed=payment_failed,
            created=session.get("created"),
        )

    async def sync_checkout(self, checkout_id: uuid.UUID, *, payment_failed: bool = False) -> None:
        async with transaction(self.sessionmaker) as session:
            checkout = await StorefrontRepository(session).checkout(checkout_id)
        if checkout is None:
            return
        truth = await self.truth(checkout, payment_failed=payment_failed)
        async with transaction(self.sessionmaker) as session:
            result = await StorefrontService(StorefrontRepository(session)).sync(
                checkout_id, truth, policy=self.settings.storefront_oversold_policy
            )
        if result.refund_due and truth.payment_intent_id and checkout.session_id:
            await self._refund(checkout_id, checkout.session_id, truth.payment_intent_id)

    async def _refund(self, checkout_id: uuid.UUID, session_id: str, payment_intent_id: str) -> None:
        refund = await self._stripe().refund(
            payment_intent_id, idempotency_key=refund_key(session_id), metadata={REFUND_METADATA_KEY: session_id}
        )
        async with transaction(self.sessionmaker) as session:
            order = await StorefrontService(StorefrontRepository(session)).refunded(checkout_id, refund.refund_id)
        log.info(
            "storefront_oversold_refunded",
            checkout_id=str(checkout_id),
            refund_id=refund.refund_id,
            order_id=str(order.id) if order else None,
        )

    async def expire(self, checkout_id: uuid.UUID) -> None:
        """Expire the checkout's session through Stripe (its hold gave way to another order, or the buyer went
        back), so the buyer cannot pay; if they already have, the completion is handled (as oversold where stock
        is short). Then the checkout is brought in line: what it still holds is released."""
        async with transaction(self.sessionmaker) as session:
            checkout = await StorefrontRepository(session).checkout(checkout_id)
        if checkout is None:
            return
        if checkout.state is CheckoutState.creating and utcnow() - checkout.created_at < CREATING_PATIENCE:
            raise RetryLater("The checkout's session is being created; expiring it once it is.", retry_after=5.0)
        if checkout.session_id is not None and checkout.state is CheckoutState.open:
            try:
                await self._stripe().expire_session(
                    checkout.session_id, idempotency_key=idempotency_key("expire", checkout.session_id)
                )
            except ChannelNotFound:
                pass
            except Rejected as exc:
                log.warning("checkout_expire_refused", checkout_id=str(checkout_id), error=exc.message)
        await self.sync_checkout(checkout_id)

    async def sweep(self) -> int:
        """Checkouts still open well past their time (an expiry event lost, a crash before the session was made):
        expired through Stripe if still open there, and their stock released."""
        async with transaction(self.sessionmaker) as session:
            overdue = await StorefrontRepository(session).overdue(utcnow() - SWEEP_GRACE, SWEEP_BATCH)
        for checkout_id in overdue:
            await self.expire(checkout_id)
        return len(overdue)
