"""A Tiki shop in the database: a cooperative's product listed on it, the sync engine and the order pipeline wired to
a Tiki sandbox through ``httpx`` mounts, on a clock the test moves (the sandbox's and the engine's)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.channels.registry import ChannelRegistry, load
from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.media.storage import storage_for
from agrimarket.models import ChannelConnection, InboundEvent, Job, JobStatus, Listing
from agrimarket.sandbox.core import SandboxConfig
from agrimarket.sandbox.tiki import TikiSandbox
from agrimarket.sync.engine import RunReport, SyncEngine
from tests.channels.support import FakeClock
from tests.media import images
from tests.sync.support import Farm

Db = async_sessionmaker[AsyncSession]
BASE = "http://tiki.test"
SETTINGS = {"api_url": BASE, "auth_url": f"{BASE}/sc/oauth2", "category_id": 8322}


@dataclass
class TikiShop:
    db: Db
    settings: Settings
    clock: FakeClock
    sandbox: TikiSandbox
    http: httpx.AsyncClient
    channels: ChannelRegistry
    farm: Farm
    connection: ChannelConnection
    product_id: uuid.UUID

    @property
    def seller_id(self) -> str:
        return str(self.connection.external_shop_id)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def engine(self) -> SyncEngine:
        return SyncEngine(
            self.db,
            self.settings,
            channels=self.channels,
            http=self.http,
            storage=storage_for(self.settings.media_storage_url, self.settings.data_dir),
            owner="tiki-test",
            clock=self.now,
        )

    async def sync(self) -> RunReport:
        report = await self.engine().run(self.connection.id)
        assert report.outcome == "done", report
        return report

    async def listings(self) -> list[Listing]:
        async with transaction(self.db) as session:
            result = await session.execute(
                select(Listing).where(Listing.connection_id == self.connection.id).order_by(Listing.created_at)
            )
            return list(result.scalars())

    async def skus(self) -> list[str]:
        from tests.orders.support import sku_of

        return [await sku_of(self.db, variant_id) for variant_id in self.farm.products[self.product_id]]

    async def inbox(self) -> list[InboundEvent]:
        async with transaction(self.db) as session:
            result = await session.execute(select(InboundEvent).where(InboundEvent.connection_id == self.connection.id))
            return list(result.scalars())

    async def queued(self, kind: str, dedupe_key: str | None = None) -> list[Job]:
        async with transaction(self.db) as session:
            result = await session.execute(select(Job).where(Job.kind == kind, Job.status == JobStatus.queued))
            jobs = [j for j in result.scalars() if j.payload.get("connection_id") == str(self.connection.id)]
        return [j for j in jobs if dedupe_key is None or j.dedupe_key == dedupe_key]

    def calls(self, op: str) -> int:
        return len(self.sandbox.market.calls_of(op))

    async def aclose(self) -> None:
        await self.http.aclose()


async def open_tiki_shop(db: Db, settings: Settings, *, review_seconds: float | None = None) -> TikiShop:
    clock = FakeClock(time.time())
    sandbox = TikiSandbox(SandboxConfig(rate_calls=1000, burst=1000), clock=clock, review_seconds=review_seconds)
    credentials = sandbox.add_shop("HTX Bưởi Phúc Trạch")
    http = httpx.AsyncClient(mounts={BASE: httpx.ASGITransport(app=sandbox.app)}, timeout=httpx.Timeout(5.0))
    farm = await Farm.make(db)
    product = await farm.product("Bưởi Phúc Trạch loại 1", variants=2, stock=8, price=90_000)
    await farm.photo(settings, product, images.jpeg(images.photo((1600, 1200))))
    connection = await farm.connect(
        settings,
        channel="tiki",
        shop_id=str(credentials["seller_id"]),
        credentials=credentials,
        channel_settings=SETTINGS,
    )
    await farm.list_product(connection, product)
    return TikiShop(db, settings, clock, sandbox, http, load(), farm, connection, product)
