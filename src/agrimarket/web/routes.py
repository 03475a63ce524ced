"""The farmer's web app: server-rendered pages for a cheap phone on a slow connection.

Every page works without JavaScript (one small script adds upload progress); every POST is checked for its CSRF
token and origin first (``forms.CheckedForm``) and answers with a 303 to the page to show next. The pages call the
domain services directly, with the same tenancy checks as the API: another farm's id in an address is a 404 page.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response
from pydantic import ValidationError

from agrimarket.accounts.schemas import LoginIn, RegisterIn
from agrimarket.accounts.service import AccountService, Principal
from agrimarket.catalog.endpoints import CatalogServiceDep
from agrimarket.catalog.schemas import ProductCreate, ProductUpdate, VariantIn, VariantUpdate
from agrimarket.catalog.service import ProductFilters, ProductView
from agrimarket.channels.endpoints import ChannelsDep
from agrimarket.config import Settings
from agrimarket.deps import AccountServiceDep, SessionDep, SettingsDep
from agrimarket.errors import AgriMarketError, Conflict, Invalid, NotAuthenticated, NotFound, PayloadTooLarge
from agrimarket.inventory.endpoints import InventoryServiceDep
from agrimarket.kit.pagination import Cursor
from agrimarket.kit.phone import normalize_vn_mobile
from agrimarket.kit.text import fold
from agrimarket.media.endpoints import MediaServiceDep, media_limits, photo_out
from agrimarket.media.pipeline import read_capped
from agrimarket.media.repository import MediaRepository
from agrimarket.media.service import MediaService, Photo
from agrimarket.models import Category, MovementKind, Organization, Role, StockLevel, Unit, User, Variant
from agrimarket.orders.endpoints import OrderServiceDep
from agrimarket.orders.service import SOLD, TERMINAL, OrderFilters, day_start
from agrimarket.web import labels
from agrimarket.web.forms import (
    CheckedForm,
    FieldErrors,
    field_error,
    local_path,
    parse_date,
    parse_vnd,
    parse_whole_number,
    pydantic_errors,
    text,
    upload,
)
from agrimarket.web.i18n import LANG_COOKIE, LOCALES, VIETNAM, Translator, translator
from agrimarket.web.pages import (
    STATIC_PATH,
    PagePrincipal,
    PageRejected,
    PageRoute,
    TranslatorDep,
    remember_session,
    render,
    see_other,
    static_files,
)
from agrimarket.web.repository import WebRepository
from agrimarket.web.throttle import LoginThrottle

router = APIRouter(route_class=PageRoute, include_in_schema=False, dependencies=[Depends(remember_session)])

PAGE_SIZE = 20
# The product list stays under the 50 KB page budget however many variants the products have: a page ends early
# once it holds this many variant rows, and a product shows at most PRODUCT_ROWS of its own (the rest: edit page).
PAGE_ROWS = 36
PRODUCT_ROWS = 8
HOME_ORDERS = 10  # today's orders and open oversold ones shown on the home page (the rest: the orders page)
LOW_STOCK = 5  # available at or below this is shown as a warning on the home page
LANG_COOKIE_DAYS = 365
_ROLE_ORDER = {Role.owner: 0, Role.admin: 1, Role.member: 2}


# -- shared bits ----------------------------------------------------------------------------------------------------


def _throttle(request: Request) -> LoginThrottle:
    state = request.app.state
    if not hasattr(state, "login_throttle"):
        state.login_throttle = LoginThrottle()
    throttle: LoginThrottle = state.login_throttle
    return throttle


def _set_session_cookie(response: Response, token: str, settings: Settings) -> None:
    # As the API's login sets it: HttpOnly (no script reads it), SameSite=Lax (no cross-site POST carries it).
    response.set_cookie(
        settings.session_cookie_name,
        token,
        max_age=settings.session_ttl_hours * 3600,
        httponly=True,
        secure=settings.secure_cookies,
        samesite="lax",
        path="/",
    )


async def _start_session(
    request: Request, accounts: AccountService, settings: Settings, user: User, next_url: str
) -> Response:
    token = await accounts.start_session(
        user, timedelta(hours=settings.session_ttl_hours), request.headers.get("user-agent")
    )
    response = see_other(next_url)
    _set_session_cookie(response, token, settings)
    return response


async def _organizations(accounts: AccountService, principal: Principal) -> list[Organization]:
    """The organizations this person acts in: their own first (owner, then admin), then those they manage."""
    found = await accounts.organizations_of(principal.access)
    found.sort(key=lambda pair: _ROLE_ORDER[pair[1]])
    return [organization for organization, _ in found]


async def _current_organization(
    accounts: AccountService, principal: Principal, org: str | None
) -> tuple[Organization, list[Organization]]:
    """The organization a page shows: ``?org=`` when given (404 when out of reach), else the person's own."""
    organizations = await _organizations(accounts, principal)
    if not organizations:
        raise NotFound("No organization.")
    if not org:
        return organizations[0], organizations
    wanted = _uuid(org)
    for organization in organizations:
        if organization.id == wanted:
            return organization, organizations
    raise NotFound("Organization not found.")


def _uuid(value: str | None) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound("Not found.") from None


def _with_query(path: str, **params: str) -> str:
    path, _, fragment = path.partition("#")
    joiner = "&" if "?" in path else "?"
    return f"{path}{joiner}{urlencode(params)}" + (f"#{fragment}" if fragment else "")


# -- static files ---------------------------------------------------------------------------------------------------


@router.get(STATIC_PATH + "/{name}")
async def static_file(name: str, v: str | None = None) -> Response:
    """The app's CSS and script; a versioned URL (``?v=<hash>``, as the pages link them) is cached for a year."""
    found = static_files().get(name)
    if found is None:
        raise NotFound("No such file.")
    cache = "public, max-age=31536000, immutable" if v == found.version else "public, max-age=300"
    return FileResponse(
        found.path, media_type=found.media_type, headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"}
    )


# -- language -------------------------------------------------------------------------------------------------------


@router.post("/lang")
async def switch_language(form: CheckedForm, settings: SettingsDep) -> Response:
    """Tiếng Việt or English, remembered in a cookie; back to the page the switch was on."""
    chosen = text(form, "lang")
    response = see_other(local_path(text(form, "next")))
    if chosen in LOCALES:
        response.set_cookie(
            LANG_COOKIE,
            chosen,
            max_age=LANG_COOKIE_DAYS * 86400,
            httponly=True,
            samesite="lax",
            secure=settings.secure_cookies,
            path="/",
        )
    return response


# -- register, log in, log out --------------------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request) -> Response:
    next_url = local_path(request.query_params.get("next"))
    return render(request, "login.html", {"values": {}, "errors": {}, "next": next_url})


def _throttle_keys(request: Request, phone: str) -> tuple[str, str]:
    try:
        phone_key = normalize_vn_mobile(phone)
    except Invalid:
        phone_key = "raw:" + re.sub(r"\D", "", phone)[:20]
    return phone_key, request.client.host if request.client else "unknown"


@router.post("/login")
async def login(
    form: CheckedForm, request: Request, accounts: AccountServiceDep, settings: SettingsDep, tr: TranslatorDep
) -> Response:
    values = {"phone": text(form, "phone")}
    password = form.get("password")
    next_url = local_path(text(form, "next"))
    context = {"values": values, "next": next_url}
    try:
        body = LoginIn(phone=values["phone"], password=password if isinstance(password, str) else "")
    except ValidationError as exc:
        return render(request, "login.html", {**context, "errors": pydantic_errors(exc, tr)}, status_code=422)
    throttle = _throttle(request)
    phone_key, ip = _throttle_keys(request, body.phone)
    if (wait := throttle.retry_after(phone_key, ip)) is not None:
        minutes = max(1, round(wait / 60))
        message = tr.ngettext(
            "Too many wrong attempts. Try again in %(num)d minute.",
            "Too many wrong attempts. Try again in %(num)d minutes.",
            minutes,
        )
        return render(request, "login.html", {**context, "errors": {"phone": message}}, status_code=429)
    try:
        user = await accounts.authenticate(body.phone, body.password)
    except NotAuthenticated:
        throttle.failed(phone_key, ip)
        message = tr.gettext("The phone number or password is wrong.")
        return render(request, "login.html", {**context, "errors": {"password": message}}, status_code=401)
    throttle.succeeded(phone_key)
    return await _start_session(request, accounts, settings, user, next_url)


def _register_page(request: Request, values: dict[str, str], errors: FieldErrors, status_code: int = 200) -> Response:
    context = {"values": values, "errors": errors, "kinds": labels.ORGANIZATION_KINDS}
    return render(request, "register.html", context, status_code=status_code)


@router.get("/register")
async def register_page(request: Request) -> Response:
    return _register_page(request, {"organization_kind": "household"}, FieldErrors())


@router.post("/register")
async def register(
    form: CheckedForm, request: Request, accounts: AccountServiceDep, settings: SettingsDep, tr: TranslatorDep
) -> Response:
    values = {name: text(form, name) for name in ("phone", "full_name", "organization_name", "organization_kind")}
    password = form.get("password")
    errors = FieldErrors()
    try:
        body = RegisterIn(
            phone=values["phone"],
            password=password if isinstance(password, str) else "",
            full_name=values["full_name"],
            organization_name=values["organization_name"],
            organization_kind=values["organization_kind"] or "household",
        )
        normalize_vn_mobile(body.phone)
    except ValidationError as exc:
        errors = pydantic_errors(exc, tr)
    except Invalid:
        errors["phone"] = field_error("phone", tr)
    if errors:
        return _register_page(request, values, errors, 422)
    try:
        user, _ = await accounts.register(
            phone=body.phone,
            password=body.password,
            full_name=body.full_name,
            organization_name=body.organization_name,
            kind=body.organization_kind,
        )
    except Conflict:
        errors["phone"] = tr.gettext("This phone number is already registered. Log in instead.")
        return _register_page(request, values, errors, 409)
    return await _start_session(request, accounts, settings, user, "/")


@router.post("/logout")
async def logout(form: CheckedForm, request: Request, accounts: AccountServiceDep, settings: SettingsDep) -> Response:
    if (cookie := request.cookies.get(settings.session_cookie_name)) is not None:
        await accounts.end_session(cookie)
    response = see_other("/login")
    response.delete_cookie(settings.session_cookie_name, path="/")
    return response


# -- home -----------------------------------------------------------------------------------------------------------


@router.get("/")
async def home(
    request: Request,
    principal: PagePrincipal,
    accounts: AccountServiceDep,
    inventory: InventoryServiceDep,
    session: SessionDep,
    orders: OrderServiceDep,
    registry: ChannelsDep,
    org: str | None = None,
) -> Response:
    organization, organizations = await _current_organization(accounts, principal, org)
    today, more_today = await orders.search(
        principal.access,
        organization.id,
        OrderFilters(placed_from=day_start(datetime.now(VIETNAM).date())),
        None,
        HOME_ORDERS,
    )
    oversold, _ = await orders.search(principal.access, organization.id, OrderFilters(oversold=True), None, 50)
    oversold = [r for r in oversold if r.order.status not in SOLD and r.order.status not in TERMINAL]
    low, more = await inventory.levels(
        principal.access,
        organization.id,
        available_lte=LOW_STOCK,
        q=None,
        include_archived=False,
        cursor=None,
        limit=PAGE_SIZE,
    )
    return render(
        request,
        "home.html",
        {
            "organization": organization,
            "organizations": organizations,
            "product_count": await WebRepository(session).product_count(organization.id),
            "low_stock": low,
            "more_low_stock": more is not None,
            "low_limit": LOW_STOCK,
            "today": today,
            "more_today": more_today is not None,
            "oversold": oversold[:HOME_ORDERS],
            "statuses": labels.ORDER_STATUSES,
            "shop": lambda channel: (
                registry.plugins[channel].capabilities.display_name if channel in registry else channel
            ),
        },
        principal=principal,
    )


# -- products -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thumbnail:
    src: str
    srcset: str
    width: int
    height: int


def _thumbnail(settings: Settings, photos: list[Photo]) -> Thumbnail | None:
    if not photos:
        return None
    thumbnails = photo_out(settings, photos[0]).thumbnails  # narrowest first
    if not thumbnails:
        return None
    smallest = thumbnails[0]
    return Thumbnail(
        src=smallest.url,
        srcset=", ".join(f"{t.url} {t.width}w" for t in thumbnails),
        width=smallest.width,
        height=smallest.height,
    )


def _on_sale(view: ProductView) -> list[Variant]:
    return [v for v in view.variants if v.archived_at is None]


@router.get("/products")
async def products_page(
    request: Request,
    principal: PagePrincipal,
    accounts: AccountServiceDep,
    catalog: CatalogServiceDep,
    media: MediaServiceDep,
    settings: SettingsDep,
    org: str | None = None,
    after: str | None = None,
    refused: str | None = None,
) -> Response:
    organization, organizations = await _current_organization(accounts, principal, org)
    views, next_cursor = await catalog.list_products(
        principal.access,
        organization.id,
        ProductFilters(),
        cursor=Cursor.decode(after) if after else None,
        limit=PAGE_SIZE,
    )
    views, next_cursor = _within_row_budget(views, next_cursor)
    photos = await media.photos_of_products([v.product.id for v in views])
    items = []
    for view in views:
        on_sale = _on_sale(view)
        items.append(
            {
                "view": view,
                "variants": on_sale[:PRODUCT_ROWS],
                "hidden": max(len(on_sale) - PRODUCT_ROWS, 0),
                "thumbnail": _thumbnail(settings, photos.get(view.product.id, [])),
            }
        )
    here = _with_query("/products", org=str(organization.id)) if org else "/products"
    return render(
        request,
        "products.html",
        {
            "organization": organization,
            "organizations": organizations,
            "items": items,
            "next_page": _with_query(here, after=next_cursor.encode()) if next_cursor else None,
            "refused": refused,
            "back": here,
            "new_key": lambda: secrets.token_urlsafe(12),
            "units": labels.UNITS,
        },
        principal=principal,
    )


def _within_row_budget(views: list[ProductView], next_cursor: Cursor | None) -> tuple[list[ProductView], Cursor | None]:
    rows = 0
    for i, view in enumerate(views):
        rows += min(len(_on_sale(view)), PRODUCT_ROWS)
        if rows > PAGE_ROWS and i > 0:
            last = views[i - 1].product
            return views[:i], Cursor(last.created_at, last.id)
    return views, next_cursor


# The product form's fields, and where pydantic reports each (a product has one variant on this screen).
FORM_FIELDS = ("name", "category", "unit", "price", "stock", "weight", "harvest_date")
_LOCATIONS: dict[tuple[Any, ...], str] = {
    ("name",): "name",
    ("category",): "category",
    ("harvest_date",): "harvest_date",
    ("variants", 0, "sku"): "name",
    ("variants", 0, "name"): "unit",
    ("variants", 0, "unit"): "unit",
    ("variants", 0, "price_vnd"): "price",
    ("variants", 0, "weight_grams"): "weight",
    ("variants", 0, "initial_stock"): "stock",
    ("unit",): "unit",
    ("price_vnd",): "price",
    ("weight_grams",): "weight",
}


@dataclass
class ProductForm:
    """What was typed, what it means, and what is wrong with it."""

    values: dict[str, str]
    errors: FieldErrors
    name: str = ""
    category: Category | None = None
    unit: Unit | None = None
    price: int | None = None
    stock: int | None = None
    weight: int | None = None
    harvest_date: date | None = None


def _read_product_form(form: Any, tr: Translator) -> ProductForm:
    values = {name: text(form, name) for name in FORM_FIELDS}
    result = ProductForm(values=values, errors=FieldErrors(), name=values["name"])
    errors = result.errors
    try:
        result.category = Category(values["category"])
    except ValueError:
        errors["category"] = field_error("category", tr)
    try:
        result.unit = Unit(values["unit"])
    except ValueError:
        errors["unit"] = field_error("unit", tr)
    for name, parse in (("price", parse_vnd), ("stock", parse_whole_number), ("weight", parse_whole_number)):
        parsed = parse(values[name]) if values[name] else None
        if parsed is None and not (name == "stock" and not values[name]):
            errors[name] = field_error(name, tr)
        setattr(result, name, parsed)
    if values["harvest_date"]:
        result.harvest_date = parse_date(values["harvest_date"])
        if result.harvest_date is None:
            errors["harvest_date"] = field_error("harvest_date", tr)
    return result


def _auto_sku(name: str, form_key: str) -> str:
    """Farmers are not asked for a SKU: the name, folded (``Sầu riêng`` → ``SAU-RIENG``), and a suffix drawn from the
    form's key. So the same form sent twice (the answer was lost on a bad connection) asks for the same SKU, and the
    second finds the product the first made instead of making it again."""
    stem = re.sub(r"[^A-Z0-9]+", "-", fold(name).upper()).strip("-")[:40].rstrip("-") or "SP"
    suffix = hashlib.sha256(form_key.encode()).hexdigest()[:8] if form_key else secrets.token_hex(4)
    return f"{stem}-{suffix.upper()}"


def _variant_name(unit: Unit) -> str:
    return f"1 {labels.UNIT_NAMES_VI[unit]}"


def _service_field(exc: AgriMarketError) -> str:
    field = exc.field or ""
    for loc, name in _LOCATIONS.items():
        if field == ".".join(str(part) for part in loc):
            return name
    return {"on_hand": "stock", "delta": "stock", "variant_id": "name"}.get(field, "name")


def _product_form_page(
    request: Request,
    principal: Principal,
    *,
    product_form: ProductForm,
    organization_id: uuid.UUID,
    view: ProductView | None = None,
    variant: Variant | None = None,
    status_code: int = 200,
) -> Response:
    limits = media_limits(request.app.state.settings)
    return render(
        request,
        "product_form.html",
        {
            "values": product_form.values,
            "errors": product_form.errors,
            "organization_id": organization_id,
            "view": view,
            "variant": variant,
            "categories": labels.CATEGORIES,
            "units": labels.UNITS,
            "max_bytes": limits.max_bytes,
            "too_large": _photo_too_large(limits.max_bytes, translator(request)),
        },
        status_code=status_code,
        principal=principal,
    )


@router.get("/products/new")
async def new_product_page(
    request: Request, principal: PagePrincipal, accounts: AccountServiceDep, org: str | None = None
) -> Response:
    organization, _ = await _current_organization(accounts, principal, org)
    values = {
        "form_key": secrets.token_urlsafe(16),
        "category": Category.fruit.value,
        "unit": Unit.kg.value,
        "stock": "0",
        "weight": str(labels.DEFAULT_WEIGHT_GRAMS),
    }
    product_form = ProductForm(values=values, errors=FieldErrors())
    return _product_form_page(request, principal, product_form=product_form, organization_id=organization.id)


async def _photo_bytes(photo: Any, media: MediaService, product_form: ProductForm, tr: Translator) -> bytes | None:
    if photo is None:
        return None
    try:
        return await read_capped(photo.read, media.limits)
    except PayloadTooLarge:
        product_form.errors["photo"] = _photo_too_large(media.limits.max_bytes, tr)
        return None


def _photo_too_large(max_bytes: int, tr: Translator) -> str:
    return tr.gettext(
        "This photo is larger than %(mb)s MB. Take it again with the camera's normal size setting.",
        mb=tr.number(max_bytes // (1024 * 1024)),
    )


def _photo_error(exc: AgriMarketError, media: MediaService, tr: Translator) -> str:
    return (
        _photo_too_large(media.limits.max_bytes, tr) if isinstance(exc, PayloadTooLarge) else field_error("photo", tr)
    )


@router.post("/products/new")
async def create_product(
    form: CheckedForm,
    request: Request,
    principal: PagePrincipal,
    catalog: CatalogServiceDep,
    media: MediaServiceDep,
    tr: TranslatorDep,
) -> Response:
    organization_id = _uuid(text(form, "org"))
    principal.access.require(organization_id)
    product_form = _read_product_form(form, tr)
    form_key = product_form.values["form_key"] = text(form, "form_key")[:100]
    data: ProductCreate | None = None
    if not product_form.errors:
        assert product_form.unit is not None
        try:
            data = ProductCreate(
                name=product_form.name,
                category=product_form.category,
                harvest_date=product_form.harvest_date,
                variants=[
                    VariantIn(
                        sku=_auto_sku(product_form.name, form_key),
                        name=_variant_name(product_form.unit),
                        unit=product_form.unit,
                        price_vnd=product_form.price,
                        weight_grams=product_form.weight,
                        initial_stock=product_form.stock or 0,
                    )
                ],
            )
        except ValidationError as exc:
            product_form.errors.update(pydantic_errors(exc, tr, _LOCATIONS))
    photo = await _photo_bytes(upload(form, "photo"), media, product_form, tr)

    def refused(status_code: int = 422) -> Response:
        return _product_form_page(
            request, principal, product_form=product_form, organization_id=organization_id, status_code=status_code
        )

    if product_form.errors or data is None:
        return refused()
    # The photo is decoded inside this transaction (after the product exists): fine for one farmer's form; the
    # photo page adds photos with the decoding done before the transaction begins.
    try:
        view = await catalog.create_product(principal.access, organization_id, data, actor_user_id=principal.user.id)
    except Conflict as exc:
        sku = data.variants[0].sku
        made = (
            (await catalog.repo.skus_in_use(organization_id, [sku])).get(sku) if exc.field == "variants.0.sku" else None
        )
        if form_key and made is not None:  # this form was sent before and its product made: show it
            return see_other(_products_url(organization_id) + f"#p-{made[0].product_id}")
        product_form.errors[_service_field(exc)] = field_error(_service_field(exc), tr)
        raise PageRejected(refused(exc.status_code)) from None
    except Invalid as exc:
        product_form.errors[_service_field(exc)] = field_error(_service_field(exc), tr)
        raise PageRejected(refused(exc.status_code)) from None
    if photo is not None:
        try:
            await media.add_photo(
                organization_id=organization_id, product_id=view.product.id, data=photo, filename=_filename(form)
            )
        except (Invalid, PayloadTooLarge) as exc:
            product_form.errors["photo"] = _photo_error(exc, media, tr)
            raise PageRejected(refused(exc.status_code)) from None
    return see_other(_products_url(organization_id) + f"#p-{view.product.id}")


def _filename(form: Any) -> str | None:
    photo = upload(form, "photo")
    return photo.filename if photo is not None else None


def _products_url(organization_id: uuid.UUID) -> str:
    return _with_query("/products", org=str(organization_id))


def _pick_variant(view: ProductView, variant_id: str | None) -> Variant:
    on_sale = _on_sale(view) or view.variants
    if not variant_id:
        return on_sale[0]
    wanted = _uuid(variant_id)
    for variant in view.variants:
        if variant.id == wanted:
            return variant
    raise NotFound("Variant not found.")


def _edit_values(view: ProductView, variant: Variant, level: StockLevel | None, tr: Translator) -> dict[str, str]:
    return {
        "name": view.product.name,
        "category": view.product.category.value,
        "unit": variant.unit.value,
        "price": tr.number(variant.price_vnd),
        "stock": str(level.on_hand if level else 0),
        "weight": str(variant.weight_grams),
        "harvest_date": view.product.harvest_date.isoformat() if view.product.harvest_date else "",
    }


@router.get("/products/{product_id}/edit")
async def edit_product_page(
    request: Request,
    product_id: uuid.UUID,
    principal: PagePrincipal,
    catalog: CatalogServiceDep,
    tr: TranslatorDep,
    variant: str | None = None,
) -> Response:
    view = await catalog.get_product(principal.access, product_id)
    chosen = _pick_variant(view, variant)
    values = _edit_values(view, chosen, view.levels.get(chosen.id), tr)
    return _product_form_page(
        request,
        principal,
        product_form=ProductForm(values=values, errors=FieldErrors()),
        organization_id=view.product.organization_id,
        view=view,
        variant=chosen,
    )


@router.post("/products/{product_id}/edit")
async def edit_product(
    form: CheckedForm,
    request: Request,
    product_id: uuid.UUID,
    principal: PagePrincipal,
    catalog: CatalogServiceDep,
    inventory: InventoryServiceDep,
    media: MediaServiceDep,
    tr: TranslatorDep,
) -> Response:
    view = await catalog.get_product(principal.access, product_id)
    variant = _pick_variant(view, text(form, "variant"))
    product_form = _read_product_form(form, tr)
    product_data: ProductUpdate | None = None
    variant_data: VariantUpdate | None = None
    if not product_form.errors:
        assert product_form.unit is not None
        try:
            product_data = ProductUpdate(
                name=product_form.name, category=product_form.category, harvest_date=product_form.harvest_date
            )
        except ValidationError as exc:
            product_form.errors.update(pydantic_errors(exc, tr, _LOCATIONS))
        changes: dict[str, Any] = {
            "unit": product_form.unit,
            "price_vnd": product_form.price,
            "weight_grams": product_form.weight,
        }
        if product_form.unit is not variant.unit and variant.name == _variant_name(variant.unit):
            changes["name"] = _variant_name(product_form.unit)  # named for its unit: follows the unit
        try:
            variant_data = VariantUpdate(**changes)
        except ValidationError as exc:
            product_form.errors.update(pydantic_errors(exc, tr, _LOCATIONS))
    if product_form.values["stock"] == "":
        product_form.errors["stock"] = field_error("stock", tr)
    photo = await _photo_bytes(upload(form, "photo"), media, product_form, tr)

    def refused(status_code: int = 422) -> Response:
        return _product_form_page(
            request,
            principal,
            product_form=product_form,
            organization_id=view.product.organization_id,
            view=view,
            variant=variant,
            status_code=status_code,
        )

    if product_form.errors or product_data is None or variant_data is None:
        return refused()
    try:
        await catalog.update_product(principal.access, product_id, product_data)
        await catalog.update_variant(principal.access, variant.id, variant_data)
        assert product_form.stock is not None
        await inventory.set_on_hand(
            principal.access,
            variant.id,
            on_hand=product_form.stock,
            kind=MovementKind.adjust,
            reason="Sửa trên trang sản phẩm",
            actor_user_id=principal.user.id,
        )
    except (Conflict, Invalid) as exc:
        name = _service_field(exc)
        product_form.errors[name] = (
            tr.gettext("Some of this stock is held for orders not yet shipped: it cannot go below that.")
            if name == "stock"
            else field_error(name, tr)
        )
        raise PageRejected(refused(exc.status_code)) from None
    if photo is not None:
        try:
            await media.add_photo(
                organization_id=view.product.organization_id,
                product_id=product_id,
                data=photo,
                filename=_filename(form),
            )
        except (Invalid, PayloadTooLarge) as exc:
            product_form.errors["photo"] = _photo_error(exc, media, tr)
            raise PageRejected(refused(exc.status_code)) from None
    return see_other(_products_url(view.product.organization_id) + f"#p-{product_id}")


# -- one-tap stock --------------------------------------------------------------------------------------------------


@router.post("/variants/{variant_id}/stock")
async def tap_stock(
    form: CheckedForm, variant_id: uuid.UUID, principal: PagePrincipal, inventory: InventoryServiceDep
) -> Response:
    """One tap: +1 or −1. The form's key makes a repeated tap (a retry on a bad connection) count once."""
    back = local_path(text(form, "next"), "/products")
    delta = {"1": 1, "+1": 1, "-1": -1}.get(text(form, "delta"))
    if delta is None:
        raise Invalid("The change is +1 or -1.", field="delta")
    # One form holds both buttons: the key is the form's, the change is the button's.
    key = f"{text(form, 'key')[:90]}:{delta:+d}" if text(form, "key") else None
    try:
        await inventory.adjust(
            principal.access,
            variant_id,
            delta=delta,
            kind=MovementKind.adjust,
            reason=f"Một chạm {delta:+d}",
            actor_user_id=principal.user.id,
            idempotency_key=key,
        )
    except Conflict as exc:
        if exc.field != "delta":
            raise
        return see_other(_with_query(back, refused=str(variant_id)) + f"#v-{variant_id}")
    return see_other(f"{back}#v-{variant_id}")


# -- photos ---------------------------------------------------------------------------------------------------------

# A retried upload (the answer was lost on the way back) is recognised by its form's key: key → the photo's hash.
# The photo service already refuses a second copy of the same photo; this only spares decoding it again.
_RECENT_UPLOADS: OrderedDict[tuple[uuid.UUID, uuid.UUID, str], str] = OrderedDict()
_RECENT_UPLOADS_MAX = 1000


async def _photos_context(
    media: MediaService, settings: Settings, organization_id: uuid.UUID, product_id: uuid.UUID
) -> list[Thumbnail]:
    photos = await media.photos(organization_id=organization_id, product_id=product_id)
    return [thumb for photo in photos if (thumb := _thumbnail(settings, [photo])) is not None]


@router.get("/products/{product_id}/photos")
async def photos_page(
    request: Request,
    product_id: uuid.UUID,
    principal: PagePrincipal,
    catalog: CatalogServiceDep,
    media: MediaServiceDep,
    settings: SettingsDep,
    tr: TranslatorDep,
    added: str | None = None,
) -> Response:
    view = await catalog.get_product(principal.access, product_id)
    return render(
        request,
        "photos.html",
        {
            "product": view.product,
            "photos": await _photos_context(media, settings, view.product.organization_id, product_id),
            "errors": {},
            "added": added,
            "upload_key": secrets.token_urlsafe(16),
            "back": _products_url(view.product.organization_id) + f"#p-{product_id}",
            "max_bytes": media.limits.max_bytes,
            "too_large": _photo_too_large(media.limits.max_bytes, tr),
        },
        principal=principal,
    )


@router.post("/products/{product_id}/photos")
async def add_photo(
    form: CheckedForm,
    request: Request,
    product_id: uuid.UUID,
    principal: PagePrincipal,
    media: MediaServiceDep,
    settings: SettingsDep,
    tr: TranslatorDep,
) -> Response:
    # The product is checked on a short read-only session: the photo is decoded before this request's writing
    # transaction begins (SQLite's write lock is not held while the CPU works).
    async with request.app.state.read_sessionmaker() as session:
        organization_id = await MediaService(MediaRepository(session), media.storage).product_organization(
            principal.access, product_id
        )
    key = (principal.user.id, product_id, text(form, "upload_key")[:100])
    done_url = f"/products/{product_id}/photos?added=1"
    content_hash = _RECENT_UPLOADS.get(key) if key[2] else None
    if content_hash and await media.repo.same_photo(organization_id, product_id, None, content_hash) is not None:
        return see_other(done_url)
    error: str | None = None
    photo = upload(form, "photo")
    if photo is None:
        error = tr.gettext("Choose a photo or take one with the camera.")
    else:
        try:
            data = await read_capped(photo.read, media.limits)
            added = await media.add_photo(
                organization_id=organization_id, product_id=product_id, data=data, filename=photo.filename
            )
        except (Invalid, PayloadTooLarge, NotFound) as exc:
            error = _photo_error(exc, media, tr)
        else:
            if key[2]:
                _RECENT_UPLOADS[key] = added.asset.content_hash
                while len(_RECENT_UPLOADS) > _RECENT_UPLOADS_MAX:
                    _RECENT_UPLOADS.popitem(last=False)
            return see_other(done_url)
    async with request.app.state.read_sessionmaker() as session:
        reader = MediaService(MediaRepository(session), media.storage)
        photos = await _photos_context(reader, settings, organization_id, product_id)
        product = await reader.catalog.product(product_id)
    assert product is not None
    return render(
        request,
        "photos.html",
        {
            "product": product,
            "photos": photos,
            "errors": {"photo": error},
            "added": None,
            "upload_key": text(form, "upload_key") or secrets.token_urlsafe(16),
            "back": _products_url(organization_id) + f"#p-{product_id}",
            "max_bytes": media.limits.max_bytes,
            "too_large": _photo_too_large(media.limits.max_bytes, tr),
        },
        status_code=422,
        principal=principal,
    )


# -- the other pages, on this router (their modules use the helpers above) ------------------------------------------

from agrimarket.web import cooperative as _cooperative  # noqa: E402, F401
from agrimarket.web import orders as _orders  # noqa: E402, F401
from agrimarket.web import shops as _shops  # noqa: E402, F401
