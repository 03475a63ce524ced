"""The sync engine: one run pushes every dirty listing of one shop, then gives the shop back.

A run, in the words of the OCA connector's exporter: skip what is unchanged → lock → map → create or update →
bind. Concretely:

1. **Lock**: take the shop's lease (one worker per shop at a time, so the rate limit holds across processes).
   A busy shop is left to its current holder, which looks for new work after it lets go.
2. **Plan** (``sync.plan``): dirty products, a page at a time; for each row, what the channel lacks.
3. **Push**: publishes one call per product; stock and prices batched to the channel's declared maximum (per
   item where it says so), every call waiting its turn under the shop's rate limit, a few in flight at once.
4. **Bind**: after each call, what it pushed is written with a compare-and-set on the version read in step 2,
   so a change made during the push leaves the row dirty and it goes out again.

Failures: a rejected listing records the platform's message and stops retrying until something changes; an
expired token is refreshed once and the call retried; throttling and 5xx end the run with ``RetryLater`` (the
platform's ``Retry-After`` honoured); repeated failed runs open the shop's circuit for a while.

Review: a platform that reviews a listing first (Tiki) answers a publish ``in_review``. The rows stay ``pending``
with the platform's words and are not dirty, so nothing asks again while it reviews; the run queues one look per shop
``sync_review_check_seconds`` later (:func:`~agrimarket.sync.queue.request_review_check`), and that run makes the
rows it finds in review dirty again (``SyncRepository.reopen_reviews``), so its publish asks how the review went. A
review that rejects the listing records the platform's reason and forgets the refused request.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.catalog.repository import CatalogRepository
from agrimarket.channels.base import (
    BatchLimit,
    BatchResult,
    ChannelAdapter,
    ChannelPlugin,
    ImageRef,
    ListingDraft,
    PriceUpdate,
    PublishResult,
    PublishState,
    StockUpdate,
)
from agrimarket.channels.errors import AuthExpired, ChannelError, ChannelNotFound, RateLimited, Rejected, Retryable
from agrimarket.channels.registry import ChannelRegistry
from agrimarket.channels.shop import adapter_for
from agrimarket.channels.validation import check_listing
from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.inventory.repository import InventoryRepository
from agrimarket.kit.crypto import CredentialCipher
from agrimarket.media.repository import MediaRepository
from agrimarket.media.storage import Storage
from agrimarket.models import ChannelConnection, ConnectionStatus, Listing, ListingStatus, Variant, utcnow
from agrimarket.observability import get_logger
from agrimarket.sync import metrics
from agrimarket.sync.plan import Action, Image, ProductPlan, RowPlan, channel_images, plan_product
from agrimarket.sync.queue import request_review_check, request_sync, sync_after_lease
from agrimarket.sync.ratelimit import Gcra
from agrimarket.sync.repository import SyncRepository
from agrimarket.worker import RetryLater

log = get_logger(__name__)

T = TypeVar("T")
U = TypeVar("U", StockUpdate, PriceUpdate)
PAGE = 200  # products planned per pass
MAX_PASSES = 50  # a shop whose listings keep changing still lets go now and then
MESSAGE_LIMIT = 1000


class LeaseLost(Exception):
    """Another worker holds this shop now (ours lapsed): stop without writing anything more."""


@dataclass
class RunReport:
    connection_id: uuid.UUID
    outcome: str = "done"  # done | busy | inactive | circuit_open | auth_expired | no_channel
    calls: Counter[str] = field(default_factory=Counter)
    entries: Counter[str] = field(default_factory=Counter)
    recorded: int = 0  # listing rows brought up to date
    rejected: int = 0
    waited_seconds: float = 0.0
    passes: int = 0


def _clip(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def chunks(updates: Sequence[T], limit: BatchLimit, item_of: Callable[[T], str]) -> Iterator[list[T]]:
    """Batches of at most ``limit.max_size``; with ``per_item``, each batch holds one item's entries only."""
    if limit.per_item:
        by_item: dict[str, list[T]] = defaultdict(list)
        for update in updates:
            by_item[item_of(update)].append(update)
        groups: list[list[T]] = list(by_item.values())
    else:
        groups = [list(updates)]
    for group in groups:
        for start in range(0, len(group), limit.max_size):
            yield group[start : start + limit.max_size]


class SyncEngine:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        channels: ChannelRegistry,
        http: httpx.AsyncClient,
        storage: Storage,
        owner: str,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.channels = channels
        self.http = http
        self.storage = storage
        self.owner = owner[:100]
        self.clock = clock
        self.cipher = CredentialCipher(settings.encryption_keys)
        self.lease = timedelta(seconds=settings.sync_lease_seconds)
        self.review_check = timedelta(seconds=settings.sync_review_check_seconds)

    async def run(self, connection_id: uuid.UUID) -> RunReport:
        report = RunReport(connection_id)
        async with transaction(self.sessionmaker) as session:
            now = self.clock()
            connection = await SyncRepository(session).acquire_lease(connection_id, self.owner, now, now + self.lease)
        if connection is None:
            report.outcome = "busy"
            await self._after_lease(connection_id)
            return report
        run = _Run(self, connection, report)
        try:
            await run.execute()
        except LeaseLost:
            log.warning("sync_lease_lost", connection_id=str(connection_id), owner=self.owner)
            report.outcome = "lease_lost"
            return report
        finally:
            report.waited_seconds = run.limiter.waited if run.limiter else 0.0
            metrics.RUNS.labels(channel=connection.channel, outcome=report.outcome).inc()
        return report

    async def _after_lease(self, connection_id: uuid.UUID) -> None:
        async with transaction(self.sessionmaker) as session:
            busy = await SyncRepository(session).connection(connection_id)
            if busy is not None and busy.sync_lease_expires_at is not None:
                at = busy.sync_lease_expires_at + timedelta(milliseconds=50)
                await sync_after_lease(session, connection_id, busy.organization_id, at)


class _Run:
    """One run over one shop, holding its lease."""

    def __init__(self, engine: SyncEngine, connection: ChannelConnection, report: RunReport) -> None:
        self.engine = engine
        self.connection = connection
        self.report = report
        self.limiter: Gcra | None = None
        self.adapter: ChannelAdapter | None = None
        self.plugin: ChannelPlugin | None = None
        self._refreshed = False
        self._write_lock = asyncio.Lock()
        self._lease_lost = False
        self._failure: ChannelError | None = None
        # Stock and price entries planned but held back for a fuller batch: (update, row, product id).
        self._carry_stock: list[tuple[StockUpdate, RowPlan, uuid.UUID]] = []
        self._carry_prices: list[tuple[PriceUpdate, RowPlan, uuid.UUID]] = []
        self._in_review = False  # a publish answered "in review": look again in sync_review_check_seconds

    @property
    def connection_id(self) -> uuid.UUID:
        return self.connection.id

    # -- the run's frame ------------------------------------------------------------------------------------

    async def execute(self) -> None:
        connection = self.connection
        now = self.engine.clock()
        if connection.status is not ConnectionStatus.active:
            self.report.outcome = "inactive"  # paused, disconnected or awaiting a new authorisation
            await self._release()
            return
        if connection.circuit_open_until is not None and connection.circuit_open_until > now:
            self.report.outcome = "circuit_open"
            await self._release(requeue_at=connection.circuit_open_until)
            return
        if connection.channel not in self.engine.channels:
            self.report.outcome = "no_channel"
            await self._release(last_error=f"The {connection.channel!r} channel is not installed on this server.")
            return
        self.plugin = self.engine.channels.get(connection.channel)
        self.limiter = Gcra(self.plugin.capabilities.rate_limit, connection.rate_next_at)
        heartbeat = asyncio.create_task(self._heartbeat(), name=f"sync lease {connection.id}")
        try:
            try:
                self.adapter = self._adapter(connection.credentials_encrypted)
                await self._passes()
            finally:
                heartbeat.cancel()
                await asyncio.gather(heartbeat, return_exceptions=True)
        except AuthExpired as exc:
            self.report.outcome = "auth_expired"
            await self._release(
                status=ConnectionStatus.auth_expired,
                last_error=_clip(f"The shop's authorisation has expired; connect it again. ({exc})"),
            )
            return
        except Retryable as exc:
            retry_after = await self._failed(exc)
            raise RetryLater(_clip(str(exc)), retry_after=retry_after) from exc
        except BaseException:
            if not self._lease_lost:
                await self._release()
            raise
        if self._lease_lost:
            raise LeaseLost
        await self._release(
            circuit_failures=0, circuit_open_until=None, last_error=None, last_synced_at=self.engine.clock()
        )

    async def _passes(self) -> None:
        # Reviews last looked at half a period ago or more are asked about in this run (the scheduled look, or a
        # run for other work that comes by anyway); the half keeps a run just after a look from asking again.
        looked_before = self.engine.clock() - self.engine.review_check / 2
        async with transaction(self.engine.sessionmaker) as session:
            await SyncRepository(session).reopen_reviews(self.connection_id, looked_before=looked_before)
        for _ in range(MAX_PASSES):
            carried = {product_id for _, _, product_id in (*self._carry_stock, *self._carry_prices)}
            async with transaction(self.engine.sessionmaker) as session:
                product_ids = await SyncRepository(session).dirty_products(self.connection_id, PAGE, exclude=carried)
            if not product_ids and not carried:
                return
            self.report.passes += 1
            plans, variants = await self._plan(product_ids) if product_ids else ([], {})
            # A part-filled batch waits for the next pass's entries, so 958 products cost the calls 958 products
            # need, not one part-filled call per page; the last page sends everything.
            await self._push(plans, variants, last=len(product_ids) < PAGE)
            if self._failure is not None:
                failure, self._failure = self._failure, None
                raise failure
        # Still dirty after many passes (changes keep coming): the next run carries on.

    async def _release(self, *, requeue_at: datetime | None = None, **values: Any) -> None:
        async with transaction(self.engine.sessionmaker) as session:
            repo = SyncRepository(session)
            if self.limiter is not None:
                values.setdefault("rate_next_at", self.limiter.next_at)
            await repo.release_lease(self.connection_id, self.engine.owner, **values)
            # Work that arrived while we held the shop was left to us (its job found the shop busy): look now,
            # after letting go, so nothing committed before this point can be missed.
            status = values.get("status", self.connection.status)
            if status is ConnectionStatus.active and (
                requeue_at is not None or await repo.has_dirty(self.connection_id)
            ):
                await request_sync(session, {self.connection_id: self.connection.organization_id}, run_at=requeue_at)
            if status is ConnectionStatus.active and self._in_review:
                at = self.engine.clock() + self.engine.review_check
                await request_review_check(session, self.connection_id, self.connection.organization_id, at)

    async def _failed(self, exc: Retryable) -> float | None:
        """A run that ended on throttling or a platform fault: count it towards the shop's circuit. Returns when
        to try again, if the platform or the circuit says."""
        failures = self.connection.circuit_failures
        values: dict[str, Any] = {"last_error": _clip(str(exc))}
        retry_after: float | None = None
        if isinstance(exc, RateLimited):
            self.report.outcome = "rate_limited"
            retry_after = exc.retry_after
            if exc.retry_after is not None and self.limiter is not None:
                self.limiter.hold_until(time.time() + exc.retry_after)
        else:
            self.report.outcome = "failed"
            failures += 1
            values["circuit_failures"] = failures
            if failures >= self.engine.settings.sync_circuit_threshold:
                values["circuit_open_until"] = self.engine.clock() + timedelta(
                    seconds=self.engine.settings.sync_circuit_cooldown_seconds
                )
                self.report.outcome = "circuit_opened"
                retry_after = self.engine.settings.sync_circuit_cooldown_seconds
                log.warning("sync_circuit_opened", connection_id=str(self.connection_id), failures=failures)
        async with transaction(self.engine.sessionmaker) as session:
            await SyncRepository(session).release_lease(
                self.connection_id,
                self.engine.owner,
                rate_next_at=self.limiter.next_at if self.limiter else None,
                **values,
            )
        return retry_after

    async def _heartbeat(self) -> None:
        interval = max(self.engine.lease.total_seconds() / 3, 0.05)
        while not self._lease_lost:
            await asyncio.sleep(interval)
            try:
                await self._renew()
            except LeaseLost:
                return
            except Exception:
                log.warning("sync_lease_not_renewed", connection_id=str(self.connection_id), exc_info=True)

    async def _renew(self) -> None:
        async with transaction(self.engine.sessionmaker) as session:
            now = self.engine.clock()
            renewed = await SyncRepository(session).renew_lease(
                self.connection_id,
                self.engine.owner,
                now,
                now + self.engine.lease,
                self.limiter.next_at if self.limiter else None,
            )
        if not renewed:
            self._lease_lost = True
            raise LeaseLost

    # -- planning -------------------------------------------------------------------------------------------

    async def _plan(self, product_ids: Sequence[uuid.UUID]) -> tuple[list[ProductPlan], dict[uuid.UUID, Variant]]:
        assert self.plugin is not None
        capabilities = self.plugin.capabilities
        async with transaction(self.engine.sessionmaker) as session:
            repo = SyncRepository(session)
            catalog = CatalogRepository(session)
            media = MediaRepository(session)
            rows = await repo.listings(self.connection_id, product_ids)
            variants_of = await catalog.variants(product_ids)
            rows = await self._add_new_variants(repo, rows, variants_of)
            by_product: dict[uuid.UUID, list[Listing]] = defaultdict(list)
            for row in rows:
                by_product[row.product_id].append(row)
            all_variants = {v.id: v for vs in variants_of.values() for v in vs}
            levels = await InventoryRepository(session).levels(list(all_variants))
            assets = await media.assets_of_products(product_ids)
            renditions = await media.renditions([a.id for a_list in assets.values() for a in a_list])
            products = await repo.products(product_ids)
            plans: list[ProductPlan] = []
            for product_id in product_ids:
                product = products.get(product_id)
                if product is None or not by_product.get(product_id):
                    continue
                images = channel_images(assets.get(product_id, []), renditions, capabilities.image_rule)
                plans.append(
                    plan_product(
                        capabilities=capabilities,
                        connection=self.connection,
                        product=product,
                        variants=variants_of[product_id],
                        rows=by_product[product_id],
                        levels=levels,
                        images=images,
                    )
                )
        return plans, all_variants

    async def _add_new_variants(
        self, repo: SyncRepository, rows: list[Listing], variants_of: Mapping[uuid.UUID, Sequence[Variant]]
    ) -> list[Listing]:
        """A variant added to a listed product joins its listing on this shop."""
        listed: dict[uuid.UUID, list[Listing]] = defaultdict(list)
        for row in rows:
            listed[row.product_id].append(row)
        added: list[Listing] = []
        for product_id, product_rows in listed.items():
            have = {row.variant_id for row in product_rows}
            template = product_rows[0]
            if template.status is ListingStatus.delisted:
                continue
            for variant in variants_of.get(product_id, []):
                if variant.id in have or variant.archived_at is not None:
                    continue
                added.append(
                    Listing(
                        id=uuid.uuid4(),
                        organization_id=template.organization_id,
                        connection_id=template.connection_id,
                        product_id=product_id,
                        variant_id=variant.id,
                        external_item_id=template.external_item_id,
                        status=ListingStatus.paused
                        if template.status is ListingStatus.paused
                        else ListingStatus.pending,
                        overrides=dict(template.overrides or {}),
                        desired_version=1,
                        pushed_version=0,
                    )
                )
        if added:
            repo.add(*added)
            await repo.session.flush()
        return rows + added

    # -- pushing --------------------------------------------------------------------------------------------

    async def _push(
        self, plans: list[ProductPlan], variants: Mapping[uuid.UUID, Variant], *, last: bool = True
    ) -> None:
        assert self.plugin is not None
        capabilities = self.plugin.capabilities
        work: list[Callable[[], Awaitable[None]]] = []
        idle: list[RowPlan] = []
        stock, self._carry_stock = self._carry_stock, []
        prices, self._carry_prices = self._carry_prices, []
        for plan in plans:
            if plan.action is Action.delist:
                work.append(functools.partial(self._delist, plan))
                continue
            if plan.action is Action.publish and await self._valid(plan, variants):
                work.append(functools.partial(self._publish, plan, variants))
            for row in plan.rows:
                if row.external_item_id is not None and row.external_sku_id is not None:
                    if Action.stock in row.pending:
                        entry = StockUpdate(row.external_item_id, row.external_sku_id, row.sku, row.stock)
                        stock.append((entry, row, plan.product.id))
                    if Action.price in row.pending:
                        update = PriceUpdate(row.external_item_id, row.external_sku_id, row.sku, row.price_vnd)
                        prices.append((update, row, plan.product.id))
                if row.done and plan.action is None:
                    idle.append(row)
        stock_batches = self._batches(stock, capabilities.stock_batch, self._carry_stock, last=last)
        for batch in stock_batches:
            work.append(functools.partial(self._set_stock, batch))
        for price_batch in self._batches(prices, capabilities.price_batch, self._carry_prices, last=last):
            work.append(functools.partial(self._set_prices, price_batch))
        if idle:
            await self._record(idle)  # coalesced away: the channel already shows this
        slots = asyncio.Semaphore(max(capabilities.max_in_flight, 1))

        async def limited(call: Callable[[], Awaitable[None]]) -> None:
            async with slots:
                if self._lease_lost:
                    raise LeaseLost
                await call()

        results = await asyncio.gather(*(limited(call) for call in work), return_exceptions=True)
        errors = [result for result in results if isinstance(result, BaseException)]
        # Worst first: a lost lease or a bug, then an authorisation the refresh could not mend, then faults.
        errors.sort(key=_severity)
        if errors:
            raise errors[0]

    @staticmethod
    def _batches(
        entries: list[tuple[U, RowPlan, uuid.UUID]],
        limit: BatchLimit,
        carry: list[tuple[U, RowPlan, uuid.UUID]],
        *,
        last: bool,
    ) -> list[list[tuple[U, RowPlan]]]:
        """Batches at the channel's maximum; unless this is the last pass, a part-filled final batch goes to
        ``carry`` (per-item batches never do: the next pass cannot add to an item planned in this one)."""
        batches = list(chunks(entries, limit, lambda entry: entry[0].external_item_id))
        if not last and not limit.per_item and batches and len(batches[-1]) < limit.max_size:
            carry.extend(batches.pop())
        return [[(update, row) for update, row, _ in batch] for batch in batches]

    async def _call(self, op: str, entries: int, fn: Callable[[ChannelAdapter], Awaitable[T]]) -> T:
        """One API call under the rate limit; an expired token is refreshed once and the call made again."""
        assert self.limiter is not None
        assert self.adapter is not None
        assert self.plugin is not None
        for attempt in (1, 2):
            await self.limiter.acquire()
            self.report.calls[op] += 1
            self.report.entries[op] += entries
            started = time.monotonic()
            try:
                result = await fn(self.adapter)
            except AuthExpired:
                metrics.CALLS.labels(channel=self.plugin.name, op=op, outcome="auth_expired").inc()
                if attempt == 2:
                    raise
                await self._refresh()
                continue
            except ChannelError as exc:
                metrics.CALLS.labels(channel=self.plugin.name, op=op, outcome=type(exc).__name__).inc()
                raise
            finally:
                metrics.CALL_SECONDS.labels(channel=self.plugin.name, op=op).observe(time.monotonic() - started)
            metrics.CALLS.labels(channel=self.plugin.name, op=op, outcome="ok").inc()
            return result
        raise AssertionError("unreachable")

    async def _refresh(self) -> None:
        """New credentials, saved over the version they came from. Refreshes are serialised: if another process
        refreshed first (its version is newer), use its credentials instead of spending a second refresh."""
        assert self.adapter is not None
        assert self.limiter is not None
        async with self._write_lock:
            async with transaction(self.engine.sessionmaker) as session:
                current = await SyncRepository(session).connection(self.connection_id)
            if current is not None and current.credentials_version != self.connection.credentials_version:
                self.connection = current
                self.adapter = self._adapter(current.credentials_encrypted)
                return
            if self._refreshed:
                raise AuthExpired("The marketplace refused the refreshed token too.")
            self._refreshed = True
            await self.limiter.acquire()
            self.report.calls["refresh"] += 1
            credentials = dict(await self.adapter.refresh_credentials())
            encrypted = self.engine.cipher.encrypt_json(credentials)
            async with transaction(self.engine.sessionmaker) as session:
                saved = await SyncRepository(session).save_credentials(
                    self.connection_id, encrypted, self.connection.credentials_version, None
                )
            if not saved:  # pragma: no cover - the version check above makes this a narrow race
                raise Retryable("The shop's credentials changed while they were being refreshed.")
            self.connection.credentials_encrypted = encrypted
            self.connection.credentials_version += 1
            self.adapter = self._adapter(encrypted)
            log.info("sync_token_refreshed", connection_id=str(self.connection_id))

    def _adapter(self, encrypted: bytes | None) -> ChannelAdapter:
        assert self.plugin is not None
        self.connection.credentials_encrypted = encrypted
        return adapter_for(self.connection, self.plugin, self.engine.cipher, self.engine.http, self.engine.settings)

    async def _valid(self, plan: ProductPlan, variants: Mapping[uuid.UUID, Variant]) -> bool:
        """Check against the channel's declared limits before sending; a listing that cannot pass is marked
        ``error`` with every problem named, and waits for a change."""
        assert self.plugin is not None
        problems = check_listing(
            self.plugin.capabilities,
            title=plan.title,
            description=plan.description,
            category=plan.category,
            attributes=plan.attributes,
            variants=plan.variant_drafts(variants),
            image_count=len(plan.images),
        )
        if not problems:
            return True
        message = _clip(" ".join(p.message for p in problems))
        for row in plan.rows:
            row.pending.clear()
            row.status = ListingStatus.error
            row.message = message
        await self._record(plan.rows)
        self.report.rejected += 1
        return False

    async def _publish(self, plan: ProductPlan, variants: Mapping[uuid.UUID, Variant]) -> None:
        uploaded = plan.uploaded_images
        images = [await self._image_ref(image, uploaded) for image in plan.images]
        draft = ListingDraft(
            product_id=plan.product.id,
            title=plan.title,
            description=plan.description,
            variants=plan.variant_drafts(variants),
            images=images,
            category=plan.category,
            attributes=dict(plan.attributes),
            external_item_id=plan.external_item_id,
            uploaded_images=uploaded,
            harvest_date=plan.product.harvest_date,
            shelf_life_days=plan.product.shelf_life_days,
        )

        async def publish(adapter: ChannelAdapter) -> PublishResult:
            nonlocal draft
            try:
                return await adapter.publish(draft)
            except ChannelError as exc:
                if exc.external_item_id is not None:
                    # The channel made the item before the call failed: a retry carries on with it.
                    draft = dataclasses.replace(draft, external_item_id=exc.external_item_id)
                raise

        try:
            result = await self._call("publish", len(draft.variants), publish)
        except Rejected as exc:
            for row in plan.rows:
                row.pending.discard(Action.publish)
                row.status = ListingStatus.rejected
                row.message = _clip(exc.message)
                if row.state.pop("in_review", None):
                    # The platform's review refused it (Tiki: final, the request cannot be sent again): forget the
                    # request, so the next publish, after a change, sends a new one.
                    row.external_item_id = None
                row.external_item_id = exc.external_item_id or row.external_item_id
            await self._record(plan.rows)
            self.report.rejected += 1
            return
        except ChannelNotFound as exc:
            # The item was deleted on the channel: forget its ids, so the next pass creates it anew (an item this
            # call had just made, named by the error, is kept).
            for row in plan.rows:
                row.external_item_id = exc.external_item_id
                row.external_sku_id = None
                row.state.pop("content", None)
            await self._record(plan.rows)
            return
        except ChannelError as exc:
            if exc.external_item_id is not None:
                # Made on the channel before the call failed (throttled, a fault): keep its id on the rows, which
                # stay dirty, so the next run's publish carries on with it rather than creating it again.
                for row in plan.rows:
                    row.external_item_id = exc.external_item_id
                await self._record(plan.rows)
            raise
        images_now = {**uploaded, **result.uploaded_images}
        status = ListingStatus.pending if result.state is PublishState.in_review else ListingStatus.live
        self._in_review = self._in_review or result.state is PublishState.in_review
        for row in plan.rows:
            row.external_item_id = result.external_item_id
            if row.active:
                row.external_sku_id = result.external_sku_ids.get(row.sku, row.external_sku_id)
                row.state.update(content=plan.content, price_vnd=row.price_vnd, stock=row.stock, images=images_now)
                row.state.pop("delisted", None)
                row.state["in_review"] = result.state is PublishState.in_review
                row.pending.discard(Action.publish)
                _settle(row, status, result.message)
        await self._record(plan.rows)

    async def _image_ref(self, image: Image, uploaded: Mapping[str, str]) -> ImageRef:
        # An image the channel already has is referred to by its id; its bytes are not read again.
        data = b"" if image.content_hash in uploaded else await self.engine.storage.get(image.storage_key)
        return ImageRef(image.content_hash, image.mime_type, image.width, image.height, data)

    async def _delist(self, plan: ProductPlan) -> None:
        item = plan.external_item_id
        assert item is not None
        with contextlib.suppress(ChannelNotFound):  # already gone: that is what was asked
            await self._call("delist", 1, lambda adapter: adapter.delist(item))
        for row in plan.rows:
            row.pending.discard(Action.delist)
            row.state["delisted"] = True
            row.message = None
        await self._record(plan.rows)

    async def _set_stock(self, batch: list[tuple[StockUpdate, RowPlan]]) -> None:
        updates = [update for update, _ in batch]
        result = await self._batch("set_stock", batch, lambda adapter: adapter.set_stock(updates))
        for update, row in batch:
            if update.sku not in result:
                row.state["stock"] = update.quantity
                row.pending.discard(Action.stock)
        await self._finish(batch, result)

    async def _set_prices(self, batch: list[tuple[PriceUpdate, RowPlan]]) -> None:
        updates = [update for update, _ in batch]
        result = await self._batch("set_prices", batch, lambda adapter: adapter.set_prices(updates))
        for update, row in batch:
            if update.sku not in result:
                row.state["price_vnd"] = update.price_vnd
                row.pending.discard(Action.price)
        await self._finish(batch, result)

    async def _batch(
        self,
        op: str,
        batch: Sequence[tuple[Any, RowPlan]],
        fn: Callable[[ChannelAdapter], Awaitable[BatchResult]],
    ) -> dict[str, ChannelError]:
        """The entries that failed, by SKU. A whole call refused counts as every entry refused with its message;
        a call that failed on throttling or a fault raises, leaving every entry dirty."""
        try:
            result = await self._call(op, len(batch), fn)
        except (Rejected, ChannelNotFound) as exc:
            return {row.sku: exc for _, row in batch}
        return {failure.sku: failure.error for failure in result.failures}

    async def _finish(self, batch: Sequence[tuple[Any, RowPlan]], failed: Mapping[str, ChannelError]) -> None:
        retry: ChannelError | None = None
        for _, row in batch:
            error = failed.get(row.sku)
            if error is None:
                if row.done:
                    _settle(row, ListingStatus.pending if row.state.get("in_review") else ListingStatus.live, None)
                continue
            if isinstance(error, ChannelNotFound):
                # The SKU or item is gone on the channel: the next pass publishes it again.
                row.external_sku_id = None
                row.state.pop("content", None)
            elif error.retryable:
                retry = retry or error
            else:
                row.pending.clear()
                row.status = ListingStatus.error
                row.message = _clip(error.message)
                self.report.rejected += 1
        await self._record([row for _, row in batch])
        if retry is not None:
            self._failure = self._failure or retry

    async def _record(self, rows: Sequence[RowPlan]) -> None:
        """Write each row's state (fenced by the lease); a row with nothing left pending gets its version."""
        async with self._write_lock, transaction(self.engine.sessionmaker) as session:
            repo = SyncRepository(session)
            now = self.engine.clock()
            assert self.limiter is not None
            if not await repo.renew_lease(
                self.connection_id, self.engine.owner, now, now + self.engine.lease, self.limiter.next_at
            ):
                self._lease_lost = True
                raise LeaseLost
            # In listing id order, as every writer of several listings locks them (see ``lock_listings``).
            for row in sorted(rows, key=lambda r: r.listing_id):
                written = await repo.record(
                    row.listing_id, row.read_version, done=row.done, pushed_at=now, **row.values()
                )
                self.report.recorded += int(written and row.done)


def _severity(error: BaseException) -> int:
    if isinstance(error, AuthExpired):
        return 1
    if isinstance(error, Retryable):
        return 3
    if isinstance(error, ChannelError):
        return 2
    return 0  # a lost lease, or a bug


def _settle(row: RowPlan, status: ListingStatus, message: str | None) -> None:
    """A row the channel now shows as we want: live (or in review), unless it is paused or delisted on purpose."""
    if row.status not in (ListingStatus.paused, ListingStatus.delisted):
        row.status = status
    row.message = message
