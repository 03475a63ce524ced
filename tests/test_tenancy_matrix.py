"""Tenancy: every API endpoint × every kind of caller × own and foreign objects.

The world: a cooperative C with an owner, an admin and a plain member; a household H1 that is a member of C; an
independent household H2; and a foreign cooperative F nobody here belongs to. Callers are the people above, plus
API tokens. For each endpoint a case makes a fresh target object in a target organization, then every caller
calls it. Expected: 404 when the caller cannot reach the target's organization (a foreign object looks exactly
like a missing one), 403 when they can but their role is too low, and the endpoint's success status otherwise.
Every successful answer is also searched for the ids of organizations the caller cannot reach.

A test at the end fails when an authenticated ``/api/v1`` route has no case here: a new endpoint cannot skip this.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from agrimarket.accounts.repository import AccountRepository
from agrimarket.accounts.service import AccountService
from agrimarket.channels.reference import ReferenceMarket, ReferencePlugin
from agrimarket.channels.registry import ChannelRegistry
from agrimarket.config import Settings
from agrimarket.db import make_sessionmaker, transaction
from agrimarket.kit.crypto import new_token, token_hash
from agrimarket.kit.phone import normalize_vn_mobile
from agrimarket.media.storage import storage_for
from agrimarket.models import (
    ApiToken,
    InboundEvent,
    Job,
    JobStatus,
    Membership,
    Order,
    OrderStatus,
    OrganizationKind,
    Role,
    User,
    utcnow,
)
from agrimarket.sync.runtime import SyncRuntime, use_runtime
from tests.channels.oauth import CHANNEL as OAUTH_CHANNEL
from tests.channels.oauth import OAuthReferencePlugin, Platform
from tests.conftest import _wipe
from tests.factories import PASSWORD, SESSION_COOKIE, new_phone, product_body
from tests.media import images

RANK = {Role.member: 1, Role.admin: 2, Role.owner: 3}
PLATFORM_SIDE = Platform()
TARGETS = ("C", "H1", "H2", "F")


@dataclass
class Caller:
    name: str
    user_id: uuid.UUID
    headers: dict[str, str]
    roles: dict[str, Role]  # target name → role the caller holds there (absent: out of reach)
    is_token: bool = False
    # Organizations the caller may know the id of without reaching them: a household knows its cooperative,
    # a cooperative's people see its member households listed.
    knows: tuple[str, ...] = ()


@dataclass
class World:
    org_ids: dict[str, uuid.UUID]
    owner_of: dict[str, Caller]  # target name → a caller (or stranger) owning it, to make objects with
    callers: list[Caller]
    spare_phones: list[str]
    _next_spare: int = 0

    def unreachable_ids(self, caller: Caller) -> list[str]:
        return [str(self.org_ids[t]) for t in TARGETS if t not in caller.roles and t not in caller.knows]

    def spare_phone(self) -> str:
        """A registered person who belongs nowhere yet (fresh for every call)."""
        self._next_spare += 1
        return self.spare_phones[self._next_spare % len(self.spare_phones)]


@dataclass
class Target:
    """What a case made in one organization: the path parameters, the body, and whose object it is."""

    params: dict[str, str]
    body: Any = None
    files: dict[str, Any] | None = None  # a multipart upload instead of a JSON body
    owner_user_id: uuid.UUID | None = None  # set for per-user objects (API tokens): only their owner may touch
    others_get: int = 404  # what everyone else gets for a per-user object
    query: dict[str, str] | None = None


@dataclass
class Ctx:
    client: httpx.AsyncClient
    session: AsyncSession


Make = Callable[[Ctx, World, str], Awaitable[Target]]


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    ok: int
    role: Role | None = Role.member  # least role in the target organization; None: any logged-in caller
    make: Make | None = None
    kinds: frozenset[OrganizationKind] = frozenset(OrganizationKind)
    browser_only: bool = False
    notes: str = field(default="", compare=False)

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


# -- makers: each makes a fresh object in the target organization, as that organization's owner -------------


async def org_only(_ctx: Ctx, world: World, target: str) -> Target:
    return Target(params={"organization_id": str(world.org_ids[target])})


def with_body(body: Callable[[World, str], Any]) -> Make:
    async def make(_ctx: Ctx, world: World, target: str) -> Target:
        return Target(params={"organization_id": str(world.org_ids[target])}, body=body(world, target))

    return make


async def a_membership(ctx: Ctx, world: World, target: str) -> Target:
    phone = world.spare_phone()
    response = await ctx.client.post(
        f"/api/v1/organizations/{world.org_ids[target]}/memberships",
        json={"phone": phone, "role": "member"},
        headers=world.owner_of[target].headers,
    )
    assert response.status_code == 201, response.text
    return Target(params={"membership_id": response.json()["id"]}, body={"role": "member"})


async def an_api_token(ctx: Ctx, world: World, target: str) -> Target:
    owner = world.owner_of[target]
    response = await ctx.client.post(
        "/api/v1/tokens",
        json={"name": "tích hợp", "organization_id": str(world.org_ids[target])},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    return Target(params={"token_id": response.json()["id"]}, owner_user_id=owner.user_id)


async def _product(ctx: Ctx, world: World, target: str) -> dict[str, Any]:
    response = await ctx.client.post(
        f"/api/v1/organizations/{world.org_ids[target]}/products",
        json=product_body(variants=2, initial_stock=10),
        headers=world.owner_of[target].headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def on_product(body: Callable[[World, str], Any] | None = None) -> Make:
    async def make(ctx: Ctx, world: World, target: str) -> Target:
        product = await _product(ctx, world, target)
        return Target(params={"product_id": product["id"]}, body=body(world, target) if body else None)

    return make


def on_variant(body: Callable[[World, str], Any] | None = None) -> Make:
    async def make(ctx: Ctx, world: World, target: str) -> Target:
        product = await _product(ctx, world, target)
        return Target(params={"variant_id": product["variants"][0]["id"]}, body=body(world, target) if body else None)

    return make


async def a_certification(ctx: Ctx, world: World, target: str) -> Target:
    product = await _product(ctx, world, target)
    response = await ctx.client.post(
        f"/api/v1/products/{product['id']}/certifications",
        json={"kind": "ocop", "number": "OCOP-BP-2026-01", "stars": 4},
        headers=world.owner_of[target].headers,
    )
    assert response.status_code == 201, response.text
    return Target(params={"certification_id": response.json()["id"]})


async def a_dead_job(ctx: Ctx, world: World, target: str) -> Target:
    job = Job(
        kind="test.noop",
        payload={},
        status=JobStatus.dead,
        organization_id=world.org_ids[target],
        attempts=3,
        max_attempts=3,
        last_error="gave up",
    )
    ctx.session.add(job)
    await ctx.session.commit()
    return Target(params={"job_id": str(job.id)})


_PHOTO = images.jpeg(images.photo((320, 240)), metadata=False)


def _photo_upload() -> dict[str, Any]:
    return {"photo": ("sau-rieng.jpg", _PHOTO, "image/jpeg")}


async def a_photo_upload(ctx: Ctx, world: World, target: str) -> Target:
    product = await _product(ctx, world, target)
    return Target(params={"product_id": product["id"]}, files=_photo_upload())


async def a_photo(ctx: Ctx, world: World, target: str) -> Target:
    product = await _product(ctx, world, target)
    response = await ctx.client.post(
        f"/api/v1/products/{product['id']}/photos", files=_photo_upload(), headers=world.owner_of[target].headers
    )
    assert response.status_code == 201, response.text
    return Target(params={"product_id": product["id"], "photo_id": response.json()["id"]})


async def a_photo_order(ctx: Ctx, world: World, target: str) -> Target:
    made = await a_photo(ctx, world, target)
    made.body = {"photo_ids": [made.params["photo_id"]]}
    return made


def _sku() -> str:
    return f"MTX-{uuid.uuid4().hex[:8].upper()}"


def _connection_body() -> dict[str, Any]:
    shop = f"mtx-{uuid.uuid4().hex[:10]}"
    return {
        "channel": "reference",
        "name": "Shop ma trận",
        "credentials": {"shop_id": shop, "access_token": "at", "refresh_token": "rt"},
    }


async def _connection(ctx: Ctx, world: World, target: str) -> str:
    response = await ctx.client.post(
        f"/api/v1/organizations/{world.org_ids[target]}/connections",
        json=_connection_body(),
        headers=world.owner_of[target].headers,
    )
    assert response.status_code == 201, response.text
    connection_id: str = response.json()["id"]
    return connection_id


def on_connection(body: Callable[[World, str], Any] | None = None) -> Make:
    async def make(ctx: Ctx, world: World, target: str) -> Target:
        connection_id = await _connection(ctx, world, target)
        return Target(params={"connection_id": connection_id}, body=body(world, target) if body else None)

    return make


async def a_product_to_list(ctx: Ctx, world: World, target: str) -> Target:
    connection_id = await _connection(ctx, world, target)
    product = await _product(ctx, world, target)
    return Target(params={"connection_id": connection_id}, body={"product_id": product["id"]})


def a_listing(body: Callable[[World, str], Any] | None = None) -> Make:
    async def make(ctx: Ctx, world: World, target: str) -> Target:
        made = await a_product_to_list(ctx, world, target)
        response = await ctx.client.post(
            f"/api/v1/connections/{made.params['connection_id']}/listings",
            json=made.body,
            headers=world.owner_of[target].headers,
        )
        assert response.status_code == 201, response.text
        params = {**made.params, "product_id": made.body["product_id"]}
        return Target(params=params, body=body(world, target) if body else None)

    return make


async def an_order(ctx: Ctx, world: World, target: str) -> Target:
    """A paid order on a reference shop of the target organization, as the inbox drain records it."""
    body = _connection_body()
    response = await ctx.client.post(
        f"/api/v1/organizations/{world.org_ids[target]}/connections", json=body, headers=world.owner_of[target].headers
    )
    assert response.status_code == 201, response.text
    placed = ReferenceMarket.shop(body["credentials"]["shop_id"]).place_order("MTX-SAU-RIENG", 1)
    order = Order(
        organization_id=world.org_ids[target],
        connection_id=uuid.UUID(response.json()["id"]),
        external_id=placed.external_id,
        status=OrderStatus.ready_to_ship,
        total_vnd=120_000,
        placed_at=utcnow(),
    )
    ctx.session.add(order)
    await ctx.session.commit()
    return Target(params={"order_id": str(order.id)})


async def _with_body(ctx: Ctx, world: World, target: str, body: dict[str, Any]) -> Target:
    made = await an_order(ctx, world, target)
    made.body = body
    return made


async def an_authorised_return(ctx: Ctx, world: World, target: str) -> Target:
    """The target's owner started connecting a shop and the platform sent them back: only they may finish."""
    owner = world.owner_of[target]
    response = await ctx.client.post(
        f"/api/v1/organizations/{world.org_ids[target]}/connections/authorize",
        json={"channel": OAUTH_CHANNEL, "name": "Shop ủy quyền"},
        headers=owner.headers,
    )
    assert response.status_code == 200, response.text
    back = PLATFORM_SIDE.grant(response.json()["authorization_url"], shop_id=f"mtx-{uuid.uuid4().hex[:10]}")
    return Target(
        params={"channel": OAUTH_CHANNEL},
        query=dict(parse_qsl(urlsplit(back).query)),
        owner_user_id=owner.user_id,
        others_get=403,  # "started by another AgriMarket account", whoever they are
    )


async def an_inbound_event(ctx: Ctx, world: World, target: str) -> Target:
    """A push received for a shop of the target organization."""
    connection_id = await _connection(ctx, world, target)
    event = InboundEvent(
        source=f"reference:{connection_id}",
        external_id=f"order:{uuid.uuid4().hex}",
        connection_id=uuid.UUID(connection_id),
        event_type="order",
        headers={"content-type": "application/json"},
        body=b'{"order_id": "A-1"}',
        received_at=utcnow(),
    )
    ctx.session.add(event)
    await ctx.session.commit()
    return Target(params={"organization_id": str(world.org_ids[target]), "event_id": str(event.id)})


def _import_file() -> dict[str, Any]:
    rows = f"Mã SKU;Tên sản phẩm;Đơn vị;Giá bán;Tồn kho;Khối lượng (g)\r\n{_sku()};Sầu riêng;hộp;120.000;5;1200\r\n"
    return {"file": ("san-pham.csv", rows.encode(), "text/csv")}


async def an_import_upload(_ctx: Ctx, world: World, target: str) -> Target:
    return Target(params={"organization_id": str(world.org_ids[target])}, files=_import_file())


async def an_import(ctx: Ctx, world: World, target: str) -> Target:
    """A previewed import of a one-row file into the target organization, uploaded by its owner."""
    response = await ctx.client.post(
        f"/api/v1/organizations/{world.org_ids[target]}/imports",
        files=_import_file(),
        headers=world.owner_of[target].headers,
    )
    assert response.status_code == 201, response.text
    return Target(params={"import_id": response.json()["id"]}, body={"mode": "valid_rows"})


def import_cases() -> list[Case]:
    """A cooperative's file names its member households, so its admins import it; a household imports its own."""
    routes: list[tuple[str, str, int, Make]] = [
        ("POST", "/api/v1/organizations/{organization_id}/imports", 201, an_import_upload),
        ("GET", "/api/v1/organizations/{organization_id}/imports", 200, org_only),
        ("GET", "/api/v1/imports/{import_id}", 200, an_import),
        ("GET", "/api/v1/imports/{import_id}/errors", 200, an_import),
        ("GET", "/api/v1/imports/{import_id}/errors.csv", 200, an_import),
        ("POST", "/api/v1/imports/{import_id}/apply", 200, an_import),
    ]
    cooperative, household = frozenset({OrganizationKind.cooperative}), frozenset({OrganizationKind.household})
    return [
        Case(method, path, ok, role=role, make=make, kinds=kinds)
        for method, path, ok, make in routes
        for role, kinds in ((Role.admin, cooperative), (Role.member, household))
    ]


CASES: list[Case] = [
    Case("GET", "/api/v1/me", 200, role=None),
    Case("GET", "/api/v1/organizations", 200, role=None),
    Case(
        "POST",
        "/api/v1/organizations",
        201,
        role=None,
        browser_only=True,
        make=with_body(lambda _w, _t: {"name": "HTX mới", "kind": "cooperative"}),
    ),
    Case("GET", "/api/v1/organizations/{organization_id}", 200, make=org_only),
    Case(
        "PATCH",
        "/api/v1/organizations/{organization_id}",
        200,
        role=Role.admin,
        make=with_body(lambda _w, _t: {"province": "Bình Phước"}),
    ),
    Case("GET", "/api/v1/organizations/{organization_id}/members", 200, make=org_only),
    Case(
        "POST",
        "/api/v1/organizations/{organization_id}/members",
        201,
        role=Role.admin,
        kinds=frozenset({OrganizationKind.cooperative}),
        make=with_body(lambda _w, _t: {"name": "Hộ Lê Văn Tám", "member_code": f"TV-{uuid.uuid4().hex[:6]}"}),
    ),
    Case("GET", "/api/v1/organizations/{organization_id}/memberships", 200, make=org_only),
    Case(
        "POST",
        "/api/v1/organizations/{organization_id}/memberships",
        201,
        role=Role.admin,
        make=with_body(lambda w, _t: {"phone": w.spare_phone(), "role": "member"}),
    ),
    Case("PATCH", "/api/v1/memberships/{membership_id}", 200, role=Role.admin, make=a_membership),
    Case("DELETE", "/api/v1/memberships/{membership_id}", 204, role=Role.admin, make=a_membership),
    Case("GET", "/api/v1/tokens", 200, role=None),
    Case(
        "POST",
        "/api/v1/tokens",
        201,
        role=Role.admin,
        browser_only=True,
        make=with_body(lambda w, t: {"name": "ERP", "organization_id": str(w.org_ids[t])}),
    ),
    Case("DELETE", "/api/v1/tokens/{token_id}", 204, role=None, make=an_api_token),
    # catalog
    Case(
        "POST", "/api/v1/organizations/{organization_id}/products", 201, make=with_body(lambda _w, _t: product_body())
    ),
    Case("GET", "/api/v1/organizations/{organization_id}/products", 200, make=org_only),
    Case("GET", "/api/v1/products/{product_id}", 200, make=on_product()),
    Case(
        "PATCH",
        "/api/v1/products/{product_id}",
        200,
        make=on_product(lambda _w, _t: {"description": "Cơm vàng hạt lép"}),
    ),
    Case("DELETE", "/api/v1/products/{product_id}", 200, role=Role.admin, make=on_product()),
    Case(
        "POST",
        "/api/v1/products/{product_id}/variants",
        201,
        make=on_product(
            lambda _w, _t: {
                "sku": _sku(),
                "name": "Thùng 5 kg",
                "unit": "thung",
                "price_vnd": 550_000,
                "weight_grams": 5_500,
            }
        ),
    ),
    Case("GET", "/api/v1/variants/{variant_id}", 200, make=on_variant()),
    Case("PATCH", "/api/v1/variants/{variant_id}", 200, make=on_variant(lambda _w, _t: {"price_vnd": 135_000})),
    Case("DELETE", "/api/v1/variants/{variant_id}", 200, role=Role.admin, make=on_variant()),
    Case(
        "POST",
        "/api/v1/products/{product_id}/certifications",
        201,
        make=on_product(lambda _w, _t: {"kind": "ocop", "number": "OCOP-BP-2026-02", "stars": 3}),
    ),
    Case("DELETE", "/api/v1/certifications/{certification_id}", 204, make=a_certification),
    # stock
    Case("GET", "/api/v1/organizations/{organization_id}/stock", 200, make=org_only),
    Case("GET", "/api/v1/variants/{variant_id}/stock", 200, make=on_variant()),
    Case(
        "PUT",
        "/api/v1/variants/{variant_id}/stock",
        200,
        make=on_variant(lambda _w, _t: {"on_hand": 7, "reason": "kiểm kho"}),
    ),
    Case(
        "POST",
        "/api/v1/variants/{variant_id}/stock/adjustments",
        200,
        make=on_variant(lambda _w, _t: {"delta": -1, "kind": "adjust", "reason": "dập"}),
    ),
    Case("GET", "/api/v1/variants/{variant_id}/stock/movements", 200, make=on_variant()),
    # photos
    Case("POST", "/api/v1/products/{product_id}/photos", 201, make=a_photo_upload),
    Case("GET", "/api/v1/products/{product_id}/photos", 200, make=a_photo),
    Case("PUT", "/api/v1/products/{product_id}/photos/order", 200, make=a_photo_order),
    Case("DELETE", "/api/v1/photos/{photo_id}", 204, make=a_photo),
    # channels, connected shops and listings
    Case("GET", "/api/v1/channels", 200, role=None),
    Case(
        "POST",
        "/api/v1/organizations/{organization_id}/connections",
        201,
        role=Role.admin,
        make=with_body(lambda _w, _t: _connection_body()),
    ),
    Case(
        "POST",
        "/api/v1/organizations/{organization_id}/connections/authorize",
        200,
        role=Role.admin,
        make=with_body(lambda _w, _t: {"channel": OAUTH_CHANNEL, "name": "Shop ủy quyền"}),
    ),
    Case("GET", "/api/v1/connections/callback/{channel}", 200, make=an_authorised_return),
    Case("GET", "/api/v1/organizations/{organization_id}/connections", 200, make=org_only),
    Case("GET", "/api/v1/connections/{connection_id}", 200, make=on_connection()),
    Case(
        "PATCH",
        "/api/v1/connections/{connection_id}",
        200,
        role=Role.admin,
        make=on_connection(lambda _w, _t: {"name": "Shop đổi tên", "category_map": {"fruit": "100629"}}),
    ),
    Case("DELETE", "/api/v1/connections/{connection_id}", 204, role=Role.admin, make=on_connection()),
    Case("POST", "/api/v1/connections/{connection_id}/listings", 201, make=a_product_to_list),
    Case("GET", "/api/v1/connections/{connection_id}/listings", 200, make=a_listing()),
    Case("GET", "/api/v1/connections/{connection_id}/listings/{product_id}", 200, make=a_listing()),
    Case(
        "PATCH",
        "/api/v1/connections/{connection_id}/listings/{product_id}",
        200,
        make=a_listing(lambda _w, _t: {"overrides": {"price_rule": {"markup_percent": 8}}}),
    ),
    Case("POST", "/api/v1/connections/{connection_id}/listings/{product_id}/pause", 200, make=a_listing()),
    Case("POST", "/api/v1/connections/{connection_id}/listings/{product_id}/resume", 200, make=a_listing()),
    Case("DELETE", "/api/v1/connections/{connection_id}/listings/{product_id}", 200, make=a_listing()),
    Case("GET", "/api/v1/products/{product_id}/listings", 200, make=a_listing()),
    # orders
    Case("GET", "/api/v1/organizations/{organization_id}/orders", 200, make=org_only),
    Case("GET", "/api/v1/orders/{order_id}", 200, make=an_order),
    Case("POST", "/api/v1/orders/{order_id}/ship", 200, make=lambda c, w, t: _with_body(c, w, t, {})),
    Case(
        "POST",
        "/api/v1/orders/{order_id}/cancel",
        200,
        make=lambda c, w, t: _with_body(c, w, t, {"reason": "Hết hàng"}),
    ),
    # background jobs
    Case("GET", "/api/v1/jobs", 200, role=None),
    Case("GET", "/api/v1/jobs/{job_id}", 200, role=Role.admin, make=a_dead_job),
    Case("POST", "/api/v1/jobs/{job_id}/retry", 200, role=Role.admin, make=a_dead_job),
    # the webhook inbox (a push belongs to its shop's organization)
    Case("GET", "/api/v1/organizations/{organization_id}/inbox", 200, make=an_inbound_event),
    Case("GET", "/api/v1/inbox/{event_id}", 200, make=an_inbound_event),
    Case("POST", "/api/v1/inbox/{event_id}/replay", 200, role=Role.admin, make=an_inbound_event),
    # bulk import
    Case("GET", "/api/v1/imports/template.csv", 200, role=None),
    Case("GET", "/api/v1/imports/template.xlsx", 200, role=None),
    Case("GET", "/api/v1/imports/columns", 200, role=None),
    *import_cases(),
]

# Routes anyone may call, logged in or not.
PUBLIC_ROUTES = {"POST /api/v1/auth/register", "POST /api/v1/auth/login", "POST /api/v1/auth/logout"}


# -- the world ------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def channels(app: FastAPI) -> ChannelRegistry:
    """The reference channel, whatever else is installed: connections are made on it; and its twin connected
    through an authorisation page."""
    registry = ChannelRegistry()
    registry.add(ReferencePlugin())
    registry.add(OAuthReferencePlugin())
    app.state.channels = registry
    return registry


@pytest.fixture(autouse=True)
def platform_http(settings: Settings) -> Iterator[None]:
    """The process's HTTP client reaches the authorisation platform's token endpoint."""
    client = httpx.AsyncClient(transport=httpx.MockTransport(PLATFORM_SIDE.handle))
    parts = SyncRuntime(
        channels=ChannelRegistry(), http=client, storage=storage_for(settings.media_storage_url, settings.data_dir)
    )
    with use_runtime(parts):
        yield


@pytest.fixture(scope="module")
async def world(engine: AsyncEngine) -> AsyncIterator[World]:
    """Committed once for the module (each case runs in its own rolled-back transaction on top of it)."""
    maker = make_sessionmaker(engine)
    async with transaction(maker) as session:
        accounts = AccountService(AccountRepository(session))

        async def person(name: str, org_name: str, kind: OrganizationKind) -> tuple[uuid.UUID, uuid.UUID, str]:
            user, org = await accounts.register(
                phone=new_phone(), password=PASSWORD, full_name=name, organization_name=org_name, kind=kind
            )
            cookie = await accounts.start_session(user, timedelta(hours=1), "pytest")
            return user.id, org.id, cookie

        coop_owner, coop_id, coop_owner_cookie = await person(
            "Chủ nhiệm HTX", "HTX Điều Bình Phước", OrganizationKind.cooperative
        )
        h1_owner, h1_id, h1_cookie = await person("Chủ hộ Một", "Hộ Một", OrganizationKind.household)
        h2_owner, h2_id, h2_cookie = await person("Chủ hộ Hai", "Hộ Hai", OrganizationKind.household)
        stranger, foreign_id, stranger_cookie = await person("Người lạ", "HTX Xa Lạ", OrganizationKind.cooperative)
        coop_admin = await accounts.create_user(phone=new_phone(), password=PASSWORD, full_name="Phó HTX")
        coop_member = await accounts.create_user(phone=new_phone(), password=PASSWORD, full_name="Xã viên")
        # Spare people to add as members; one password hash shared, since Argon2 is slow on purpose.
        spares = [
            User(
                phone=normalize_vn_mobile(new_phone()),
                full_name=f"Dự phòng {i}",
                password_hash=coop_admin.password_hash,
            )
            for i in range(64)
        ]
        session.add_all(spares)
        session.add_all(
            [
                Membership(user_id=coop_admin.id, organization_id=coop_id, role=Role.admin),
                Membership(user_id=coop_member.id, organization_id=coop_id, role=Role.member),
            ]
        )
        h1 = await accounts.repo.organization(h1_id)
        assert h1 is not None
        h1.cooperative_id = coop_id
        admin_cookie = await accounts.start_session(coop_admin, timedelta(hours=1), "pytest")
        member_cookie = await accounts.start_session(coop_member, timedelta(hours=1), "pytest")

        def token_for(user_id: uuid.UUID, org_id: uuid.UUID) -> str:
            secret = new_token("agm")
            session.add(
                ApiToken(
                    token_hash=token_hash(secret),
                    prefix=secret[:10],
                    name="matrix",
                    user_id=user_id,
                    organization_id=org_id,
                    created_at=utcnow(),
                )
            )
            return secret

        coop_token = token_for(coop_owner, coop_id)
        h1_token = token_for(h1_owner, h1_id)

    def cookie(value: str) -> dict[str, str]:
        return {"Cookie": f"{SESSION_COOKIE}={value}"}

    def bearer(value: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {value}"}

    owner, admin, member = Role.owner, Role.admin, Role.member
    callers = [
        Caller("coop owner", coop_owner, cookie(coop_owner_cookie), {"C": owner, "H1": admin}),
        Caller("coop admin", coop_admin.id, cookie(admin_cookie), {"C": admin, "H1": admin}),
        Caller("coop member", coop_member.id, cookie(member_cookie), {"C": member}, knows=("H1",)),
        Caller("household owner", h1_owner, cookie(h1_cookie), {"H1": owner}, knows=("C",)),
        Caller("outsider", h2_owner, cookie(h2_cookie), {"H2": owner}),
        Caller("coop owner's token", coop_owner, bearer(coop_token), {"C": owner, "H1": admin}, is_token=True),
        Caller("household token", h1_owner, bearer(h1_token), {"H1": owner}, is_token=True, knows=("C",)),
    ]
    stranger_caller = Caller("stranger", stranger, cookie(stranger_cookie), {"F": owner})
    world = World(
        org_ids={"C": coop_id, "H1": h1_id, "H2": h2_id, "F": foreign_id},
        owner_of={"C": callers[0], "H1": callers[3], "H2": callers[4], "F": stranger_caller},
        callers=callers,
        spare_phones=[s.phone for s in spares],
    )
    yield world
    await _wipe(engine)


def _kind(target: str) -> OrganizationKind:
    return OrganizationKind.cooperative if target in ("C", "F") else OrganizationKind.household


def expected_status(case: Case, caller: Caller, target: Target | None, target_name: str | None) -> int:
    if case.browser_only and caller.is_token:
        return 403
    if target is not None and target.owner_user_id is not None:
        return case.ok if caller.user_id == target.owner_user_id else target.others_get
    if case.role is None or target_name is None:
        return case.ok
    held = caller.roles.get(target_name)
    if held is None:
        return 404
    return case.ok if RANK[held] >= RANK[case.role] else 403


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_every_caller_gets_exactly_their_due(
    case: Case, world: World, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    ctx = Ctx(client, session)
    mismatches: list[str] = []
    targets = [t for t in TARGETS if _kind(t) in case.kinds] if case.make is not None else [None]
    for caller in world.callers:
        for target_name in targets:
            target = await case.make(ctx, world, target_name) if case.make and target_name else None
            path = case.path.format(**(target.params if target else {}))
            kwargs: dict[str, Any] = {"headers": caller.headers}
            if target is not None and target.body is not None:
                kwargs["json"] = target.body
            if target is not None and target.files is not None:
                kwargs["files"] = target.files
            if target is not None and target.query is not None:
                kwargs["params"] = target.query
            response = await client.request(case.method, path, **kwargs)
            client.cookies.clear()
            want = expected_status(case, caller, target, target_name)
            if response.status_code != want:
                mismatches.append(
                    f"{caller.name} → {target_name}: got {response.status_code}, want {want}: {response.text[:200]}"
                )
            elif response.status_code < 300:
                leaked = [i for i in world.unreachable_ids(caller) if i in response.text]
                if leaked and case.method == "GET":
                    mismatches.append(f"{caller.name} → {target_name}: answer names unreachable organizations {leaked}")
    assert not mismatches, f"{case.id}:\n" + "\n".join(mismatches)


def test_every_authenticated_route_has_a_matrix_case(app: FastAPI) -> None:
    # The OpenAPI document, not app.routes: FastAPI may keep included routers nested rather than flattened.
    routes = {
        f"{method.upper()} {path}"
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/api/v1")
        for method in operations
    }
    assert len(routes) > len(PUBLIC_ROUTES)
    covered = {case.id for case in CASES}
    missing = sorted(routes - covered - PUBLIC_ROUTES)
    assert not missing, "API routes without a tenancy case: " + ", ".join(missing)
