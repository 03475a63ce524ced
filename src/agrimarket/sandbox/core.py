"""What every sandbox marketplace shares: a shop's catalogue and orders, its tokens, the front door every call goes
through (latency, rate limit, injected faults, call log), signed push notifications and a page a person can watch.

A platform's sandbox (``agrimarket.sandbox.shopee``, ``agrimarket.sandbox.lazada``) holds one :class:`Marketplace`
and speaks the platform's own paths, parameters, signatures and error envelopes over it; this module knows no
platform. State is in memory, per process: the demo and the benchmarks run a sandbox inside one server, tests reach
it through ``httpx.ASGITransport``.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import httpx
from pydantic import Base64Bytes, TypeAdapter
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from agrimarket.observability import get_logger

log = get_logger(__name__)

Clock = Callable[[], float]  # Unix seconds; injectable so tests can move time


class Fault(StrEnum):
    """What an injected fault does to the next call of its operation."""

    server_error = "server_error"  # the platform's 5xx
    timeout = "timeout"  # no answer until the client gives up (sleeps ``SandboxConfig.timeout_seconds``)
    throttle = "throttle"  # the platform's own "too many requests" error, whatever the rate


@dataclass
class SandboxConfig:
    """How a sandbox behaves. ``rate_calls`` per ``rate_per_seconds`` per shop (with ``burst``); where the platform
    publishes no figure this is our stated default, and the sandbox says so on its page."""

    latency_seconds: float = 0.0
    rate_calls: int = 10
    rate_per_seconds: float = 1.0
    burst: int = 10
    rate_documented: bool = False
    lost_push_every: int = 0  # 0: every push is sent; n: every n-th push is lost (recorded, never delivered)
    timeout_seconds: float = 30.0
    push_retry_seconds: float = 0.0  # 0: a failed push is not retried (the platform retries much later)


@dataclass
class Sku:
    sku_id: int
    seller_sku: str
    name: str  # the variation option shown to buyers ("Hộp 1 kg")
    price_vnd: int
    stock: int
    image_ids: list[str] = field(default_factory=list)


@dataclass
class Item:
    item_id: int
    name: str
    description: str
    category_id: str | None
    status: str  # the platform's word: NORMAL / UNLIST (Shopee), active / inactive (Lazada)
    image_ids: list[str]
    skus: dict[int, Sku] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0

    def sku_by_seller_sku(self, seller_sku: str) -> Sku | None:
        return next((s for s in self.skus.values() if s.seller_sku == seller_sku), None)


@dataclass
class OrderLine:
    line_id: int
    item_id: int | None
    sku_id: int | None
    seller_sku: str
    name: str
    quantity: int
    unit_price_vnd: int
    status: str = ""  # per-line status, for platforms that keep one (Lazada)
    package_id: str | None = None


@dataclass
class Order:
    order_id: str
    status: str  # the platform's word
    created_at: float
    updated_at: float
    lines: list[OrderLine]
    buyer_name: str
    shipping_fee_vnd: int = 0
    tracking_number: str | None = None
    cancel_reason: str | None = None
    history: list[tuple[float, str]] = field(default_factory=list)

    @property
    def total_vnd(self) -> int:
        return sum(line.quantity * line.unit_price_vnd for line in self.lines) + self.shipping_fee_vnd


@dataclass
class Image:
    image_id: str
    content_type: str
    data: Base64Bytes = field(repr=False)  # base64 in a snapshot
    url: str = ""


@dataclass
class Call:
    """One API call as the platform saw it: which operation, how many entries, what it answered."""

    op: str
    shop_id: str | None
    size: int
    started: float
    ended: float
    outcome: str  # "ok" or the platform's error code


@dataclass
class Push:
    """A push notification as sent (or lost): the exact bytes and headers the platform signed."""

    url: str
    headers: dict[str, str]
    body: bytes
    event: str
    delivered: bool = False
    status_code: int | None = None
    lost: bool = False
    at: float = 0.0


@dataclass
class Shop:
    shop_id: str
    name: str
    access_token: str = ""
    refresh_token: str = ""
    access_expires_at: float = 0.0
    refresh_expires_at: float = 0.0
    used_refresh_tokens: set[str] = field(default_factory=set)
    items: dict[int, Item] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    callback_url: str | None = None
    rate_tat: float = 0.0  # GCRA's theoretical arrival time (monotonic seconds)

    def sku(self, sku_id: int) -> tuple[Item, Sku] | None:
        for item in self.items.values():
            if sku_id in item.skus:
                return item, item.skus[sku_id]
        return None

    def by_seller_sku(self, seller_sku: str) -> tuple[Item, Sku] | None:
        for item in self.items.values():
            found = item.sku_by_seller_sku(seller_sku)
            if found is not None:
                return item, found
        return None


class Refused(Exception):
    """The front door refused the call: ``fault`` says why; the platform's module answers in its own envelope."""

    def __init__(self, fault: Fault, *, retry_after: float | None = None) -> None:
        super().__init__(fault.value)
        self.fault = fault
        self.retry_after = retry_after


class Marketplace:
    """Shops, images, tokens, the call log and pushes of one sandbox platform."""

    def __init__(
        self,
        platform: str,
        config: SandboxConfig | None = None,
        *,
        clock: Clock = time.time,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.platform = platform
        self.config = config or SandboxConfig()
        self.clock = clock
        self.shops: dict[str, Shop] = {}
        self.images: dict[str, Image] = {}
        self.calls: list[Call] = []
        self.pushes: list[Push] = []
        self._faults: dict[str, deque[Fault]] = {}
        self._ids = itertools.count(1_000_001)
        self._push_count = 0
        self._http = http
        self._tasks: set[asyncio.Task[None]] = set()
        self.lock = asyncio.Lock()  # operations that read-modify-write several shops' rows hold it

    # -- ids, shops and tokens -----------------------------------------------------------------------------

    def new_id(self) -> int:
        return next(self._ids)

    def now(self) -> float:
        return self.clock()

    def add_shop(self, shop_id: str, name: str, *, access_ttl: float, refresh_ttl: float) -> Shop:
        shop = Shop(shop_id=shop_id, name=name)
        self.issue_tokens(shop, access_ttl=access_ttl, refresh_ttl=refresh_ttl)
        self.shops[shop_id] = shop
        return shop

    def issue_tokens(self, shop: Shop, *, access_ttl: float, refresh_ttl: float) -> None:
        shop.access_token = secrets.token_hex(16)
        shop.refresh_token = secrets.token_hex(16)
        shop.access_expires_at = self.now() + access_ttl
        shop.refresh_expires_at = self.now() + refresh_ttl

    def shop_for_token(self, access_token: str) -> Shop | None:
        return next((s for s in self.shops.values() if secrets.compare_digest(s.access_token, access_token)), None)

    def expire_access_token(self, shop_id: str) -> None:
        """The shop's access token stops working now (tests of the refresh path)."""
        self.shops[shop_id].access_expires_at = self.now() - 1

    # -- the front door ------------------------------------------------------------------------------------

    def inject(self, op: str, fault: Fault, *, times: int = 1) -> None:
        """The next ``times`` calls of ``op`` (or of any op, for ``"*"``) meet ``fault``."""
        self._faults.setdefault(op, deque()).extend([fault] * times)

    def _take_fault(self, op: str) -> Fault | None:
        for key in (op, "*"):
            queue = self._faults.get(key)
            if queue:
                return queue.popleft()
        return None

    def _admit(self, shop: Shop | None, now: float) -> float | None:
        """GCRA per shop (or per platform for calls without a shop): None to go now, else seconds to wait."""
        config = self.config
        interval = config.rate_per_seconds / config.rate_calls
        allowance = (config.burst - 1) * interval + 0.2 * interval  # a real gateway allows some clock slack too
        holder: Any = shop if shop is not None else self
        tat = max(getattr(holder, "rate_tat", 0.0), now)
        if tat - now > allowance:
            return tat - allowance - now
        holder.rate_tat = tat + interval
        return None

    rate_tat = 0.0  # the platform-wide bucket for calls that name no shop

    async def door(self, op: str, shop: Shop | None) -> None:
        """Latency, then the rate limit, then an injected fault: raises :class:`Refused` or returns."""
        if self.config.latency_seconds:
            await asyncio.sleep(self.config.latency_seconds)
        wait = self._admit(shop, time.monotonic())
        if wait is not None:
            raise Refused(Fault.throttle, retry_after=max(wait, 0.001))
        fault = self._take_fault(op)
        if fault is Fault.timeout:
            await asyncio.sleep(self.config.timeout_seconds)
        if fault is not None:
            raise Refused(fault, retry_after=1.0 if fault is Fault.throttle else None)

    def record(self, op: str, shop: Shop | None, size: int, started: float, outcome: str) -> None:
        self.calls.append(Call(op, shop.shop_id if shop else None, size, started, time.monotonic(), outcome))

    def calls_of(self, op: str | None = None, *, outcome: str | None = "ok") -> list[Call]:
        return [c for c in self.calls if (op is None or c.op == op) and (outcome is None or c.outcome == outcome)]

    # -- images --------------------------------------------------------------------------------------------

    def store_image(self, data: bytes, content_type: str, url_of: Callable[[str], str]) -> Image:
        image_id = secrets.token_hex(12)
        image = Image(image_id, content_type, data, url_of(image_id))
        self.images[image_id] = image
        return image

    # -- orders and pushes ---------------------------------------------------------------------------------

    def take_stock(self, shop: Shop, seller_sku: str, quantity: int) -> tuple[Item | None, Sku | None]:
        """A buyer takes ``quantity``: the platform's stock goes down, never below zero (it may oversell us)."""
        found = shop.by_seller_sku(seller_sku)
        if found is None:
            return None, None
        item, sku = found
        sku.stock = max(sku.stock - quantity, 0)
        item.updated_at = self.now()
        return item, sku

    def set_status(self, order: Order, status: str) -> None:
        order.status = status
        order.updated_at = max(self.now(), order.updated_at)
        order.history.append((order.updated_at, status))

    def push(self, url: str | None, headers: Mapping[str, str], body: bytes, event: str) -> Push | None:
        """Send a signed push in the background (``url`` None: nobody is listening, nothing is sent). Every
        ``lost_push_every``-th push is lost: recorded, never delivered, as a platform's own outage would."""
        if not url:
            return None
        self._push_count += 1
        entry = Push(url=url, headers=dict(headers), body=body, event=event, at=self.now())
        self.pushes.append(entry)
        every = self.config.lost_push_every
        if every and self._push_count % every == 0:
            entry.lost = True
            return entry
        task = asyncio.get_running_loop().create_task(self._deliver(entry))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return entry

    async def _deliver(self, entry: Push) -> None:
        client = self._http
        owned = client is None
        if client is None:
            client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0))
        try:
            for attempt in range(2 if self.config.push_retry_seconds else 1):
                if attempt:
                    await asyncio.sleep(self.config.push_retry_seconds)
                try:
                    response = await client.post(entry.url, content=entry.body, headers=entry.headers)
                except httpx.HTTPError as exc:
                    log.warning("sandbox_push_failed", platform=self.platform, url=entry.url, error=str(exc))
                    continue
                entry.status_code = response.status_code
                if response.is_success:
                    entry.delivered = True
                    return
        finally:
            if owned:
                await client.aclose()

    async def drain(self) -> None:
        """Wait until every push in flight has been delivered or has failed."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- keeping state across restarts (the demo) -----------------------------------------------------------

    def snapshot(self) -> bytes:
        """Shops, images and the id counter as JSON, for :meth:`restore` after a restart."""
        return _SNAPSHOT.dump_json(_Snapshot(self.shops, self.images, next(self._ids)))

    def restore(self, data: bytes) -> None:
        saved = _SNAPSHOT.validate_json(data)
        self.shops, self.images = saved.shops, saved.images
        self._ids = itertools.count(saved.next_id + 1)

    def use_http(self, client: httpx.AsyncClient | None) -> None:
        """Send pushes with this client (tests: an ``ASGITransport`` to the app under test)."""
        self._http = client


@dataclass
class _Snapshot:
    shops: dict[str, Shop]
    images: dict[str, Image]
    next_id: int


_SNAPSHOT = TypeAdapter(_Snapshot)


# -- a page a person can watch ---------------------------------------------------------------------------


def _vnd(amount: int) -> str:
    return f"{amount:,}".replace(",", ".") + " ₫"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def own_base_url(request: Request) -> str:
    """This app's own address, mount prefix included (``request.base_url`` names the outermost app's)."""
    return str(request.url.replace(path=request.scope.get("root_path", "") + "/", query="", fragment=""))


def image_response(market: Marketplace, image_id: str, *, cache_control: str) -> Response:
    """An image the market stores, as its page and the adapters fetch it (404 when there is none)."""
    image = market.images.get(image_id)
    if image is None:
        return Response(status_code=404)
    return Response(image.data, media_type=image.content_type, headers={"Cache-Control": cache_control})


async def buy_from_page(
    market: Marketplace,
    request: Request,
    shop_id: str,
    place_order: Callable[[str, Sequence[tuple[str, int]]], Awaitable[object]],
    *,
    unknown_product: str,
) -> Response:
    """The shop page's "buy" button (``seller_sku``, ``quantity`` at least 1): a paid order, exactly as the sandbox's
    ``place_order`` makes one; then back to the shop's page."""
    if shop_id not in market.shops:
        return HTMLResponse("<p>No such shop.</p>", status_code=404)
    async with request.form() as form:
        seller_sku = str(form.get("seller_sku") or "")
        quantity = str(form.get("quantity") or "1")
    try:
        await place_order(shop_id, [(seller_sku, max(int(quantity), 1))])
    except (KeyError, ValueError):
        return HTMLResponse(unknown_product, status_code=404)
    return RedirectResponse(f"{own_base_url(request)}sandbox/shops/{shop_id}", status_code=303)


@dataclass(frozen=True)
class PageLinks:
    """How the page reaches its own parts: an image's address, and the form that places a buyer's order."""

    image_url: Callable[[str], str]
    order_form_action: str | None = None


def shop_page(market: Marketplace, shop: Shop, links: PageLinks, *, title: str, accent: str) -> str:
    """The shop as a buyer and a curious farmer would see it: listings with photos, price and stock; recent orders."""
    esc = html.escape
    config = market.config
    rate_note = f"{config.rate_calls} calls / {config.rate_per_seconds:g} s per shop" + (
        "" if config.rate_documented else " (sandbox default, configurable)"
    )
    cards: list[str] = []
    for item in sorted(shop.items.values(), key=lambda i: i.created_at, reverse=True):
        photo = (
            f'<img src="{esc(links.image_url(item.image_ids[0]))}" alt="" width="160" height="160" loading="lazy">'
            if item.image_ids
            else '<div class="nophoto">no photo</div>'
        )
        rows = "".join(
            f"<tr><td>{esc(s.name)}</td><td><code>{esc(s.seller_sku)}</code></td>"
            f'<td class="n">{_vnd(s.price_vnd)}</td><td class="n stock">{s.stock}</td>'
            + (
                f'<td><form method="post" action="{esc(links.order_form_action)}">'
                f'<input type="hidden" name="seller_sku" value="{esc(s.seller_sku)}">'
                '<button type="submit">buy 1</button></form></td>'
                if links.order_form_action
                else ""
            )
            + "</tr>"
            for s in item.skus.values()
        )
        cards.append(
            f'<article class="item {esc(item.status.lower())}" data-item-id="{item.item_id}">{photo}<div>'
            f"<h2>{esc(item.name)}</h2><p class=status>{esc(item.status)} · id {item.item_id}</p>"
            f"<table>{rows}</table></div></article>"
        )
    orders = "".join(
        f"<tr><td><code>{esc(o.order_id)}</code></td><td>{esc(o.status)}</td>"
        f"<td>{esc(', '.join(f'{line.quantity}× {line.seller_sku}' for line in o.lines))}</td>"
        f'<td class="n">{_vnd(o.total_vnd)}</td><td>{_when(o.updated_at)}</td></tr>'
        for o in sorted(shop.orders.values(), key=lambda o: o.created_at, reverse=True)[:20]
    )
    return f"""<!doctype html>
<html lang="vi"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5"><title>{esc(title)} sandbox · {esc(shop.name)}</title>
<style>
body{{font:15px/1.4 system-ui,sans-serif;margin:0;background:#f5f5f5;color:#222}}
header{{background:{accent};color:#fff;padding:12px 16px}} header p{{margin:2px 0 0;font-size:13px;opacity:.9}}
main{{padding:12px;display:grid;gap:12px;max-width:960px;margin:auto}}
.item{{display:flex;gap:12px;background:#fff;border-radius:8px;padding:12px}} .item.unlist,.item.inactive{{opacity:.5}}
.item img,.nophoto{{width:160px;height:160px;object-fit:cover;border-radius:6px;background:#ddd;flex:none}}
h2{{font-size:17px;margin:0}} .status{{margin:2px 0 6px;color:#666;font-size:13px}}
table{{border-collapse:collapse;width:100%}} td{{padding:4px 6px;border-top:1px solid #eee}} .n{{text-align:right}}
.stock{{font-weight:700}} section{{background:#fff;border-radius:8px;padding:12px}}
</style></head><body>
<header><strong>{esc(title)} — SANDBOX</strong> · {esc(shop.name)} (shop {esc(shop.shop_id)})
<p>Not the real marketplace: a local stand-in that speaks its API. Rate limit {esc(rate_note)}. Refreshes every 5 s.</p>
</header><main>
{"".join(cards) or "<p>No listings yet. Publish a product to this shop from AgriMarket.</p>"}
<section><h2>Orders</h2><table>{orders or "<tr><td>No orders yet.</td></tr>"}</table></section>
</main></body></html>"""
