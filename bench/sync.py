"""Sync benchmark: 10,000 stock changes over 2,000 variants, pushed to a Shopee, a Lazada, a TikTok Shop and a Tiki
sandbox shop.

Run: ``python -m bench.sync [--variants 2000] [--changes 10000] [--database-url postgresql+psycopg://…]``.

Method:

1. A throwaway data directory and database (SQLite in it, or a throwaway PostgreSQL database made beside the one
   ``--database-url`` names, dropped afterwards), migrated.
2. ``--variants`` variants in products of 1–4 variants each (seeded; mean 2.1: "Hũ 500 g", "Túi 1 kg",
   "Thùng 5 kg"), made through the catalogue service, one photo each (every one of the four requires one). One
   Shopee, one Lazada, one TikTok Shop and one Tiki sandbox shop (Tiki's reviews approve at once,
   ``review_seconds=0``; Tiki makes one product of each variant), every product listed on all four.
3. **Setup (not measured)**: the engine publishes everything with the sandboxes at no latency and a high rate
   limit, and the plugins wrapped to declare that high limit. Every listing is then checked live and clean.
4. **Measured**: each sandbox gets 50 ms latency and the rate limit its plugin declares (calls, period, burst);
   the real plugins; call logs cleared. ``--changes`` stock changes (every variant at least once, the rest skewed
   towards popular variants, seeded) go in through ``InventoryService.set_on_hand``, 100 per transaction, with no
   worker running: the changes queue one sync job per shop, as they would while workers are busy elsewhere.
   When the last change is committed the clock starts and one in-process ``Worker`` with the ``sync.connection``
   handler (the production path: queue → job → ``SyncEngine.run``; default sync and worker settings, except the
   periodic scheduler off) starts. **seconds**: from that commit until the end of the last stock call any
   sandbox logged, at which moment all four shops show exactly the available stock of every SKU (checked in the
   sandboxes' own state, and no listing left dirty, no job left queued). ``apply_seconds``: how long the changes
   took to commit. (Tiki's event-queue pulls are the periodic scheduler's: off here, so its call log holds only
   what the sync sends.)

   Why the worker starts after the last change: a worker running during the changes pushes a variant, then pushes
   it again after its next change, so the call count measures how the changes were spread in time, not the
   engine's batching; and "from the last commit" would leave out the pushing done meanwhile.
5. **min_calls**, from the final difference between each shop's stock before and after: Shopee, per item,
   ⌈changed models / 50⌉ (``update_stock`` takes one item and ≤ 50 models); Lazada, ⌈changed SKUs / 20⌉ (the
   plugin's declared batch: Lazada's documented maximum is 50 and its recommendation 20, see the plugin;
   ``lazada_min_calls_at_50`` gives the figure at 50 too); TikTok Shop, per product, ⌈changed SKUs / 100⌉
   (``inventory/update`` takes one product and ≤ 100 of its SKUs); Tiki, ⌈changed SKUs / 50⌉ (``updateSkus``: 50
   products a call, the plugin's stated default; each variant is a product of its own). Each from the batch limit
   the plugin declares (``stock_batch``: its size, and whether one call stays within one item). ``calls``:
   successful stock calls in the sandboxes' logs; any other call and any refused one (throttled, faults) is
   reported beside it. **floor_seconds** per shop: ``max(0, min_calls − burst) × interval + latency`` (the burst
   goes at once, then one call per interval, and the last one takes its latency), from the rate limit the plugin
   declares (Shopee 10/s burst 10, Lazada 10/s burst 5, TikTok Shop 50/s burst 10, Tiki 5/s burst 5); overall the
   largest of the four, since the shops are pushed in parallel.

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import json
import math
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageDraw
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agrimarket import migrate
from agrimarket.accounts.permissions import Access
from agrimarket.catalog.repository import CatalogRepository
from agrimarket.catalog.schemas import ProductCreate
from agrimarket.catalog.service import CatalogService
from agrimarket.channels.base import (
    BatchLimit,
    Capabilities,
    ChannelAdapter,
    ChannelPlugin,
    ConnectionInfo,
    RateLimit,
)
from agrimarket.channels.registry import ChannelRegistry, load
from agrimarket.config import Settings
from agrimarket.db import create_engine, make_sessionmaker, transaction
from agrimarket.inventory.repository import InventoryRepository
from agrimarket.inventory.service import InventoryService
from agrimarket.kit.crypto import CredentialCipher
from agrimarket.media.repository import MediaRepository
from agrimarket.media.service import MediaService
from agrimarket.media.storage import Storage, storage_for
from agrimarket.models import (
    ChannelConnection,
    Job,
    JobStatus,
    Listing,
    ListingStatus,
    MovementKind,
    Organization,
    OrganizationKind,
    Role,
)
from agrimarket.observability import configure_logging
from agrimarket.sandbox.core import Marketplace, SandboxConfig
from agrimarket.sandbox.lazada import LazadaSandbox
from agrimarket.sandbox.shopee import ShopeeSandbox
from agrimarket.sandbox.tiki import TikiSandbox
from agrimarket.sandbox.tiktok import TikTokSandbox
from agrimarket.sync.engine import SyncEngine
from agrimarket.sync.queue import SYNC_KIND, request_sync
from agrimarket.sync.runtime import SyncRuntime, use_runtime
from agrimarket.sync.tasks import sync_connection
from agrimarket.worker import Registry, RetryLater, Worker
from bench._common import bench_settings
from bench._common import throwaway_database as throwaway_database  # bench.orders imports it from here

SEED = 20_240_611
LATENCY = 0.05
CHANGES_PER_TRANSACTION = 100
LAZADA_DOCUMENTED_MAX = 50  # /product/stock/sellable/update: at most 50 SKUs (20 recommended)

# A product's name and the sizes it comes in ("Hũ 500 g", "Túi 1 kg", …): option name, unit, grams.
PRODUCTS: list[tuple[str, list[tuple[str, str, int]]]] = [
    ("Hạt điều rang muối", [("Hũ 250 g", "hu", 250), ("Hũ 500 g", "hu", 500), ("Túi 1 kg", "tui", 1000)]),
    ("Hạt điều vỏ lụa", [("Túi 500 g", "tui", 500), ("Túi 1 kg", "tui", 1000), ("Túi 2 kg", "tui", 2000)]),
    ("Hạt điều tươi", [("Túi 1 kg", "tui", 1000), ("Túi 2 kg", "tui", 2000), ("Bao 10 kg", "tui", 10_000)]),
    ("Tiêu đen Lộc Ninh", [("Hũ 100 g", "hu", 100), ("Túi 500 g", "tui", 500), ("Túi 1 kg", "tui", 1000)]),
    ("Cà phê Robusta rang mộc", [("Túi 250 g", "tui", 250), ("Túi 500 g", "tui", 500), ("Túi 1 kg", "tui", 1000)]),
    ("Mắc ca nứt vỏ", [("Hộp 500 g", "hop", 500), ("Túi 1 kg", "tui", 1000), ("Túi 2 kg", "tui", 2000)]),
]
LARGEST = ("Thùng 5 kg", "thung", 5000)  # every product's fourth size
VARIANTS_PER_PRODUCT = (1, 2, 3, 4)
VARIANT_WEIGHTS = (0.35, 0.35, 0.15, 0.15)  # mean 2.1 variants per product


# -- the world --------------------------------------------------------------------------------------------------


class LimitedPlugin:
    """The real plugin with another declared rate limit (the setup publishes at no latency and a high rate)."""

    def __init__(self, plugin: ChannelPlugin, rate_limit: RateLimit) -> None:
        self._plugin = plugin
        self._capabilities = dataclasses.replace(plugin.capabilities, rate_limit=rate_limit)

    @property
    def name(self) -> str:
        return self._plugin.name

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    @property
    def credentials_schema(self) -> type[BaseModel]:
        return self._plugin.credentials_schema

    @property
    def settings_schema(self) -> type[BaseModel]:
        return self._plugin.settings_schema

    def shop_id(self, credentials: Mapping[str, Any]) -> str | None:
        return self._plugin.shop_id(credentials)

    def adapter(self, connection: ConnectionInfo, http: httpx.AsyncClient) -> ChannelAdapter:
        return self._plugin.adapter(connection, http)


@dataclass
class Shop:
    """One sandbox platform, our shop on it, and the names its call log uses."""

    channel: str
    sandbox: ShopeeSandbox | LazadaSandbox | TikTokSandbox | TikiSandbox
    shop_id: str
    credentials: dict[str, Any]
    settings: dict[str, Any]
    stock_op: str
    connection_id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def market(self) -> Marketplace:
        return self.sandbox.market

    def stock(self) -> dict[str, int]:
        """Every SKU's stock as the platform shows it, by seller SKU."""
        shop = self.market.shops[self.shop_id]
        return {sku.seller_sku: sku.stock for item in shop.items.values() for sku in item.skus.values()}

    def item_of(self) -> dict[str, int]:
        shop = self.market.shops[self.shop_id]
        return {sku.seller_sku: item.item_id for item in shop.items.values() for sku in item.skus.values()}


def make_shops() -> list[Shop]:
    fast = SandboxConfig(rate_calls=100_000, burst=100_000)
    shopee = ShopeeSandbox(fast)
    shopee_credentials = shopee.add_shop("Nông sản Bình Phước")
    lazada = LazadaSandbox(SandboxConfig(rate_calls=100_000, burst=100_000))
    lazada_credentials = lazada.add_shop("Nông sản Bình Phước")
    tiktok = TikTokSandbox(SandboxConfig(rate_calls=100_000, burst=100_000))
    tiktok_credentials = tiktok.add_shop("Nông sản Bình Phước")
    # Tiki reviews every product request; here it approves at once, so the setup publishes in seconds.
    tiki = TikiSandbox(SandboxConfig(rate_calls=100_000, burst=100_000), review_seconds=0)
    tiki_credentials = tiki.add_shop("Nông sản Bình Phước")
    return [
        Shop(
            "shopee",
            shopee,
            str(shopee_credentials["shop_id"]),
            shopee_credentials,
            # No pause between a new item and its variations (Shopee's guide asks 5 s): it only slows publishing.
            {"base_url": "http://shopee.test", "variation_delay_seconds": 0},
            "product.update_stock",
        ),
        Shop(
            "lazada",
            lazada,
            str(lazada_credentials["seller_id"]),
            lazada_credentials,
            {"api_url": "http://lazada.test/rest", "auth_url": "http://lazada.test/auth", "primary_category": 10000481},
            "/product/stock/sellable/update",
        ),
        Shop(
            "tiktok",
            tiktok,
            str(tiktok_credentials["shop_id"]),
            tiktok_credentials,
            {
                "api_url": "http://tiktok.test",
                "auth_url": "http://tiktok.test/auth",
                "services_url": "http://tiktok.test/services",
            },
            "/product/202309/products/{product_id}/inventory/update",
        ),
        Shop(
            "tiki",
            tiki,
            str(tiki_credentials["seller_id"]),
            tiki_credentials,
            {"api_url": "http://tiki.test", "auth_url": "http://tiki.test/sc/oauth2", "category_id": 8322},
            "PUT /integration/v2.1/products/updateSkus",
        ),
    ]


def photo_jpeg(size: int = 800) -> bytes:
    """A product photo (Lazada wants ≥ 330 px); one for every product, so the pipeline stores it once."""
    image = Image.linear_gradient("L").resize((size, size)).convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.ellipse((size // 5, size // 4, size * 4 // 5, size * 3 // 4), fill=(196, 140, 60))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


@dataclass
class Catalogue:
    organization_id: uuid.UUID
    access: Access
    products: dict[uuid.UUID, list[uuid.UUID]]  # product → its variant ids
    skus: dict[uuid.UUID, str]  # variant → SKU
    on_hand: dict[uuid.UUID, int]
    names: dict[uuid.UUID, str] = field(default_factory=dict)  # product → its name


async def make_catalogue(
    db: async_sessionmaker[AsyncSession], settings: Settings, storage: Storage, variants: int, rng: random.Random
) -> Catalogue:
    organization_id = uuid.uuid4()
    async with transaction(db) as session:
        session.add(Organization(id=organization_id, name="HTX Điều Bình Phước", kind=OrganizationKind.cooperative))
    access = Access(uuid.uuid4(), {organization_id: Role.owner})
    catalogue = Catalogue(organization_id, access, {}, {}, {})
    photo = photo_jpeg()
    made = 0
    lot = 0
    while made < variants:
        count = min(rng.choices(VARIANTS_PER_PRODUCT, VARIANT_WEIGHTS)[0], variants - made)
        name, sizes = PRODUCTS[lot % len(PRODUCTS)]
        lot += 1
        options = [*sizes, LARGEST][:count]
        stocks = [rng.randint(5, 200) for _ in options]
        data = ProductCreate.model_validate(
            {
                "name": f"{name} lô {lot:04d}",
                "description": "Đặc sản Bình Phước, đóng gói tại hợp tác xã.",
                "category": "nuts",
                "variants": [
                    {
                        "sku": f"BP{lot:05d}-{i + 1}",
                        "name": option,
                        "unit": unit,
                        "price_vnd": 40_000 + grams * 300,
                        "weight_grams": grams,
                        "initial_stock": stock,
                    }
                    for i, ((option, unit, grams), stock) in enumerate(zip(options, stocks, strict=True))
                ],
            }
        )
        async with transaction(db) as session:
            inventory = InventoryService(InventoryRepository(session))
            view = await CatalogService(CatalogRepository(session), inventory).create_product(
                access, organization_id, data, actor_user_id=None
            )
        async with transaction(db) as session:
            await MediaService(MediaRepository(session), storage).add_photo(
                organization_id=organization_id, product_id=view.product.id, data=photo, filename="dieu.jpg"
            )
        catalogue.products[view.product.id] = [v.id for v in view.variants]
        catalogue.names[view.product.id] = view.product.name
        for variant, stock in zip(view.variants, stocks, strict=True):
            catalogue.skus[variant.id] = variant.sku
            catalogue.on_hand[variant.id] = stock
        made += count
    return catalogue


def listing_overrides(shop: Shop, name: str) -> dict[str, Any]:
    """TikTok Shop wants a title of ≥ 25 characters ("Mắc ca nứt vỏ lô 0001" has 21): its listings get their own,
    as a seller gives them; the other shops show the product's name."""
    return {"title": f"{name} – đặc sản Bình Phước"} if shop.channel == "tiktok" else {}


async def connect_and_list(
    db: async_sessionmaker[AsyncSession], settings: Settings, catalogue: Catalogue, shop: Shop
) -> None:
    """The shop connected (credentials encrypted as the connect flow stores them) and every product listed."""
    connection = ChannelConnection(
        id=shop.connection_id,
        organization_id=catalogue.organization_id,
        channel=shop.channel,
        name=f"{shop.channel} {shop.shop_id}",
        external_shop_id=shop.shop_id,
        credentials_encrypted=CredentialCipher(settings.encryption_keys).encrypt_json(shop.credentials),
        settings={"channel": shop.settings, "category_map": {}},
    )
    async with transaction(db) as session:
        session.add(connection)
    async with transaction(db) as session:
        for product_id, variant_ids in catalogue.products.items():
            for variant_id in variant_ids:
                session.add(
                    Listing(
                        organization_id=catalogue.organization_id,
                        connection_id=shop.connection_id,
                        product_id=product_id,
                        variant_id=variant_id,
                        overrides=listing_overrides(shop, catalogue.names[product_id]),
                    )
                )
        await session.flush()
        await request_sync(session, {shop.connection_id: catalogue.organization_id})


async def publish_all(
    db: async_sessionmaker[AsyncSession],
    settings: Settings,
    http: httpx.AsyncClient,
    storage: Storage,
    shops: list[Shop],
) -> None:
    """Setup: the engine straight (no worker), with plugins that declare a high rate limit."""
    fast = RateLimit(calls=100_000, per_seconds=1.0, burst=100_000)
    registry = ChannelRegistry()
    for plugin in load().plugins.values():
        registry.add(LimitedPlugin(plugin, fast))
    engine = SyncEngine(db, settings, channels=registry, http=http, storage=storage, owner="bench-setup")

    async def publish(shop: Shop) -> None:
        for _ in range(20):
            try:
                await engine.run(shop.connection_id)
            except RetryLater as exc:
                await asyncio.sleep(exc.retry_after or 0.1)
                continue
            if not await dirty_rows(db, shop.connection_id):
                return
        raise SystemExit(f"setup: {shop.channel} still has unpublished listings")

    await asyncio.gather(*(publish(shop) for shop in shops))


async def dirty_rows(db: async_sessionmaker[AsyncSession], connection_id: uuid.UUID) -> int:
    async with transaction(db) as session:
        found = await session.scalar(
            select(func.count())
            .select_from(Listing)
            .where(Listing.connection_id == connection_id, Listing.desired_version > Listing.pushed_version)
        )
    return int(found or 0)


async def check_published(db: async_sessionmaker[AsyncSession], catalogue: Catalogue, shop: Shop) -> None:
    async with transaction(db) as session:
        rows = list(
            (await session.execute(select(Listing).where(Listing.connection_id == shop.connection_id))).scalars()
        )
    bad = [row for row in rows if row.status is not ListingStatus.live or row.desired_version > row.pushed_version]
    if bad or len(rows) != len(catalogue.skus):
        reasons = Counter(f"{row.status.value}: {row.channel_message}" for row in bad)
        raise SystemExit(
            f"setup: {shop.channel}: {len(bad)} of {len(rows)} listings not live and clean; {dict(reasons)}"
        )
    expected = {catalogue.skus[v]: n for v, n in catalogue.on_hand.items()}
    if shop.stock() != expected:
        raise SystemExit(f"setup: {shop.channel} does not show our stock")


# -- the changes ------------------------------------------------------------------------------------------------


def plan_changes(catalogue: Catalogue, changes: int, rng: random.Random) -> list[tuple[uuid.UUID, int]]:
    """Every variant once, the rest skewed (a few variants sell and get counted far more often), in a random order;
    each a new quantity (never the one it replaces, so each one is a real change)."""
    variants = list(catalogue.skus)
    popularity = [1.0 / (rank + 1) ** 0.8 for rank in range(len(variants))]
    ordered = rng.sample(variants, len(variants))
    chosen = variants + rng.choices(ordered, popularity, k=max(changes - len(variants), 0))
    rng.shuffle(chosen)
    on_hand = dict(catalogue.on_hand)
    planned: list[tuple[uuid.UUID, int]] = []
    for variant in chosen:
        current = on_hand[variant]
        new = max(current + rng.choice([-1, 1]) * rng.randint(1, 12), 0)
        if new == current:
            new = current + 1
        on_hand[variant] = new
        planned.append((variant, new))
    return planned


async def apply_changes(
    db: async_sessionmaker[AsyncSession], catalogue: Catalogue, planned: Sequence[tuple[uuid.UUID, int]]
) -> None:
    for start in range(0, len(planned), CHANGES_PER_TRANSACTION):
        async with transaction(db) as session:
            inventory = InventoryService(InventoryRepository(session))
            for variant, on_hand in planned[start : start + CHANGES_PER_TRANSACTION]:
                change = await inventory.set_on_hand(
                    catalogue.access,
                    variant,
                    on_hand=on_hand,
                    kind=MovementKind.adjust,
                    reason="kiểm kho",
                    actor_user_id=None,
                )
                if change.movement is None:
                    raise SystemExit("a planned change wrote nothing")
        for variant, on_hand in planned[start : start + CHANGES_PER_TRANSACTION]:
            catalogue.on_hand[variant] = on_hand


async def unfinished_jobs(db: async_sessionmaker[AsyncSession]) -> int:
    async with transaction(db) as session:
        found = await session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.kind == SYNC_KIND, Job.status.in_([JobStatus.queued, JobStatus.running]))
        )
    return int(found or 0)


# -- figures ----------------------------------------------------------------------------------------------------


def min_stock_calls(shop: Shop, before: Mapping[str, int], after: Mapping[str, int], batch: BatchLimit) -> int:
    """The fewest stock calls the declared batch limit allows: per item where one call stays within one item
    (Shopee, TikTok Shop), else over all the changed SKUs (Lazada, Tiki)."""
    changed = [sku for sku, stock in after.items() if before.get(sku) != stock]
    if batch.per_item:
        items = Counter(shop.item_of()[sku] for sku in changed)
        return sum(math.ceil(n / batch.max_size) for n in items.values())
    return math.ceil(len(changed) / batch.max_size)


def floor_seconds(calls: int, limit: RateLimit, latency: float) -> float:
    return max(0, calls - limit.burst) * limit.interval + latency if calls else 0.0


@dataclass
class ShopFigures:
    calls: int
    min_calls: int
    changed_skus: int
    seconds: float
    floor_seconds: float
    other_calls: dict[str, int]
    refused_calls: dict[str, int]
    entries: int
    batch_sizes: dict[int, int]  # stock calls by entries carried
    rate_limit: str

    @property
    def calls_ratio(self) -> float:
        return self.calls / self.min_calls if self.min_calls else 1.0

    @property
    def time_ratio(self) -> float:
        return self.seconds / self.floor_seconds if self.floor_seconds else 1.0

    def as_json(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "seconds": round(self.seconds, 3),
            "floor_seconds": round(self.floor_seconds, 3),
            "calls_ratio": round(self.calls_ratio, 4),
            "time_ratio": round(self.time_ratio, 4),
        }


# -- the run ----------------------------------------------------------------------------------------------------


async def run(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    shops = make_shops()
    engine: AsyncEngine = create_engine(settings)
    db = make_sessionmaker(engine)
    storage = storage_for(settings.media_storage_url, settings.data_dir)
    http = httpx.AsyncClient(
        mounts={f"http://{shop.channel}.test": httpx.ASGITransport(app=shop.sandbox.app) for shop in shops},
        timeout=httpx.Timeout(30.0),
    )
    try:
        started = time.perf_counter()
        catalogue = await make_catalogue(db, settings, storage, args.variants, rng)
        for shop in shops:
            await connect_and_list(db, settings, catalogue, shop)
        await publish_all(db, settings, http, storage, shops)
        for shop in shops:
            await check_published(db, catalogue, shop)
        setup_seconds = time.perf_counter() - started
        print(
            f"setup: {len(catalogue.products)} products, {len(catalogue.skus)} variants published to all "
            f"{len(shops)} shops in {setup_seconds:.1f} s",
            flush=True,
        )

        # The measured phase: real plugins, each sandbox at 50 ms and its plugin's declared limit.
        registry = load()
        limits: dict[str, RateLimit] = {}
        for shop in shops:
            limit = registry.get(shop.channel).capabilities.rate_limit
            limits[shop.channel] = limit
            shop.market.config = SandboxConfig(
                latency_seconds=args.latency,
                rate_calls=limit.calls,
                rate_per_seconds=limit.per_seconds,
                burst=limit.burst,
            )
            shop.market.calls.clear()
        before = {shop.channel: shop.stock() for shop in shops}

        planned = plan_changes(catalogue, args.changes, rng)
        applying = time.monotonic()
        await apply_changes(db, catalogue, planned)
        committed = time.monotonic()  # the sandboxes' call log uses this clock too
        apply_seconds = committed - applying
        print(f"applied {len(planned)} stock changes in {apply_seconds:.1f} s; syncing…", flush=True)

        expected = {catalogue.skus[v]: n for v, n in catalogue.on_hand.items()}  # stock rule: available
        worker_settings = settings.model_copy(update={"worker_scheduler": False})
        jobs = Registry()
        jobs.register(SYNC_KIND, sync_connection)
        runtime = SyncRuntime(channels=registry, http=http, storage=storage)
        deadline = committed + args.timeout
        with use_runtime(runtime):
            async with Worker(engine, worker_settings, registry=jobs, metrics=False, worker_id="bench"):
                while not all(shop.stock() == expected for shop in shops):
                    if time.monotonic() > deadline:
                        raise SystemExit("the shops never caught up with the changes")
                    await asyncio.sleep(0.05)
                shown = time.monotonic() - committed
                while await unfinished_jobs(db) or any([await dirty_rows(db, s.connection_id) for s in shops]):
                    if time.monotonic() > deadline:
                        raise SystemExit("the sync jobs never finished")
                    await asyncio.sleep(0.05)
                settled = time.monotonic() - committed

        figures: dict[str, ShopFigures] = {}
        for shop in shops:
            limit = limits[shop.channel]
            batch = registry.get(shop.channel).capabilities.stock_batch
            ok = [c for c in shop.market.calls if c.op == shop.stock_op and c.outcome == "ok"]
            minimum = min_stock_calls(shop, before[shop.channel], expected, batch)
            figures[shop.channel] = ShopFigures(
                calls=len(ok),
                min_calls=minimum,
                changed_skus=sum(1 for sku, n in expected.items() if before[shop.channel].get(sku) != n),
                seconds=max((c.ended for c in ok), default=committed) - committed,
                floor_seconds=floor_seconds(minimum, limit, args.latency),
                other_calls=dict(Counter(c.op for c in shop.market.calls if c.op != shop.stock_op)),
                refused_calls=dict(Counter(f"{c.op}: {c.outcome}" for c in shop.market.calls if c.outcome != "ok")),
                entries=sum(c.size for c in ok),
                batch_sizes=dict(sorted(Counter(c.size for c in ok).items())),
                rate_limit=f"{limit.calls}/{limit.per_seconds:g}s burst {limit.burst}",
            )
        lazada = next(shop for shop in shops if shop.channel == "lazada")
        lazada_at_50 = min_stock_calls(lazada, before["lazada"], expected, BatchLimit(LAZADA_DOCUMENTED_MAX))
    finally:
        await http.aclose()
        await engine.dispose()

    calls = sum(f.calls for f in figures.values())
    min_calls = sum(f.min_calls for f in figures.values())
    seconds = max(f.seconds for f in figures.values())
    floor = max(f.floor_seconds for f in figures.values())
    return {
        "calls": calls,
        "min_calls": min_calls,
        "seconds": round(seconds, 3),
        "floor_seconds": round(floor, 3),
        "calls_ratio": round(calls / min_calls, 4) if min_calls else 1.0,
        "time_ratio": round(seconds / floor, 4) if floor else 1.0,
        "shown_seconds": round(shown, 3),
        "settled_seconds": round(settled, 3),
        "apply_seconds": round(apply_seconds, 3),
        "setup_seconds": round(setup_seconds, 3),
        "changes": len(planned),
        "variants": len(catalogue.skus),
        "products": len(catalogue.products),
        "latency_seconds": args.latency,
        "lazada_min_calls_at_50": lazada_at_50,
        "shops": {channel: f.as_json() for channel, f in figures.items()},
        "database": engine.dialect.name,
    }


def report(result: Mapping[str, Any]) -> None:
    print()
    print(
        f"{result['changes']} stock changes over {result['variants']} variants ({result['products']} products), "
        f"{result['database']}, {result['latency_seconds'] * 1000:.0f} ms latency; changes committed in "
        f"{result['apply_seconds']:.1f} s"
    )
    header = f"{'shop':8} {'rate limit':>18} {'changed':>8} {'calls':>6} {'min':>6} {'ratio':>6} "
    header += f"{'seconds':>8} {'floor':>8} {'ratio':>6}  other / refused calls"
    print(header)
    shops: Mapping[str, Mapping[str, Any]] = result["shops"]
    for channel, f in shops.items():
        print(
            f"{channel:8} {f['rate_limit']:>18} {f['changed_skus']:>8} {f['calls']:>6} {f['min_calls']:>6} "
            f"{f['calls_ratio']:>6.3f} {f['seconds']:>8.2f} {f['floor_seconds']:>8.2f} {f['time_ratio']:>6.3f}  "
            f"{f['other_calls'] or '-'} / {f['refused_calls'] or '-'}"
        )
    print(
        f"{'all':8} {'':>18} {'':>8} {result['calls']:>6} {result['min_calls']:>6} {result['calls_ratio']:>6.3f} "
        f"{result['seconds']:>8.2f} {result['floor_seconds']:>8.2f} {result['time_ratio']:>6.3f}"
    )
    for channel, f in shops.items():
        sizes = ", ".join(f"{n}×{size}" for size, n in f["batch_sizes"].items())
        print(f"{channel} stock calls by SKUs carried: {sizes}")
    print(
        f"all {len(shops)} shops showed every SKU's stock {result['shown_seconds']:.2f} s after the last commit "
        f"(polled every 50 ms); jobs finished and no listing dirty at {result['settled_seconds']:.2f} s"
    )
    extra = result["calls"] - result["min_calls"]
    calls_verdict = "met" if extra <= 0 else f"NOT met ({extra} over)"
    time_verdict = "met" if result["time_ratio"] <= 1.3 else "NOT met"
    print(f"target: calls = minimum {calls_verdict}; time ≤ 1.3 × floor {time_verdict}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--variants", type=int, default=2000)
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=LATENCY, help="seconds each sandbox call takes")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--timeout", type=float, default=900.0, help="give up this long after the last commit")
    parser.add_argument("--database-url", help="PostgreSQL to make a throwaway database beside (default: SQLite)")
    args = parser.parse_args(argv)
    if args.changes < args.variants:
        parser.error("--changes must be at least --variants (every variant changes once)")

    configure_logging(json_logs=False, level="WARNING")
    directory = Path(tempfile.mkdtemp(prefix="agrimarket-bench-sync-"))
    try:
        with throwaway_database(directory, args.database_url) as url:
            settings = bench_settings(directory, url)
            migrate.upgrade(settings)
            result = asyncio.run(run(settings, args))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    report(result)
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
