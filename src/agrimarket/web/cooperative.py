"""The cooperative's pages: its member households (add one by its representative's phone, see its products), and
the bulk upload of a product file — preview, apply, progress, error report — through the imports API's own
functions (``imports.endpoints``), so a file does here exactly what it does through the API."""

from __future__ import annotations

import uuid
from typing import cast

from fastapi import Request
from fastapi import UploadFile as FastAPIUploadFile
from fastapi.responses import Response

from agrimarket.accounts.service import Principal
from agrimarket.deps import AccountServiceDep, SettingsDep
from agrimarket.errors import Conflict, Invalid, NotFound
from agrimarket.imports import endpoints as import_api
from agrimarket.imports.columns import field_for
from agrimarket.imports.endpoints import ImportServiceDep
from agrimarket.imports.schemas import ApplyIn, RowErrorOut
from agrimarket.imports.service import Mode
from agrimarket.models import ImportStatus, OrganizationKind, Role
from agrimarket.web.forms import CHECK_THIS, FIELD_MESSAGES, CheckedForm, FieldErrors, field_error, text, upload
from agrimarket.web.i18n import N_, Translator
from agrimarket.web.pages import PagePrincipal, PageRejected, TranslatorDep, render, see_other
from agrimarket.web.routes import _current_organization, _uuid, router

IMPORT_REFRESH_SECONDS = 2  # the page reloads itself (meta refresh) while a file is checked or applied


def _members_page(
    request: Request,
    principal: Principal,
    organization: object,
    organizations: list[object],
    households: list[object],
    values: dict[str, str],
    errors: FieldErrors,
    status_code: int = 200,
    added: bool = False,
) -> Response:
    return render(
        request,
        "members.html",
        {
            "organization": organization,
            "organizations": organizations,
            "households": households,
            "values": values,
            "errors": errors,
            "added": added,
        },
        status_code=status_code,
        principal=principal,
    )


@router.get("/members")
async def members_page(
    request: Request,
    principal: PagePrincipal,
    accounts: AccountServiceDep,
    org: str | None = None,
    added: str | None = None,
) -> Response:
    organization, organizations = await _current_organization(accounts, principal, org)
    if organization.kind is not OrganizationKind.cooperative:
        raise NotFound("Not a cooperative.")
    households = await accounts.member_households(principal.access, organization.id)
    return _members_page(
        request, principal, organization, list(organizations), list(households), {}, FieldErrors(), added=bool(added)
    )


@router.post("/members")
async def add_member(
    form: CheckedForm,
    request: Request,
    principal: PagePrincipal,
    accounts: AccountServiceDep,
    tr: TranslatorDep,
) -> Response:
    """A member household, its representative found by the phone they registered with (accounts service)."""
    organization, organizations = await _current_organization(accounts, principal, text(form, "org"))
    principal.access.require(organization.id, Role.admin)
    values = {name: text(form, name) for name in ("name", "phone", "member_code")}
    errors = FieldErrors()
    if not values["name"] or len(values["name"]) > 200:
        errors["name"] = tr.gettext("Enter the household's name (at most 200 characters).")
    if not values["phone"]:
        errors["phone"] = field_error("phone", tr)
    if not errors:
        try:
            household = await accounts.add_member_household(
                principal.access,
                organization.id,
                name=values["name"],
                member_code=values["member_code"] or None,
                owner_phone=values["phone"],
                province=None,
            )
        except (Invalid, Conflict) as exc:
            if exc.field == "member_code":
                errors["member_code"] = tr.gettext("This member code is already used in this cooperative.")
            elif exc.field == "owner_phone" and "registered" in exc.message:
                errors["phone"] = tr.gettext(
                    "No one has registered with this phone number yet. Ask the household to register first."
                )
            else:
                errors["phone"] = field_error("phone", tr)
            households = await accounts.member_households(principal.access, organization.id)
            page = _members_page(
                request, principal, organization, list(organizations), list(households), values, errors, 422
            )
            raise PageRejected(page) from None
        return see_other(f"/members?org={organization.id}&added={household.id}")
    households = await accounts.member_households(principal.access, organization.id)
    return _members_page(request, principal, organization, list(organizations), list(households), values, errors, 422)


# -- bulk upload ----------------------------------------------------------------------------------------------------


@router.get("/imports/new")
async def import_form(
    request: Request, principal: PagePrincipal, accounts: AccountServiceDep, org: str | None = None
) -> Response:
    organization, organizations = await _current_organization(accounts, principal, org)
    return render(
        request,
        "import_new.html",
        {"organization": organization, "organizations": organizations, "error": None},
        principal=principal,
    )


@router.post("/imports")
async def upload_file(
    form: CheckedForm,
    request: Request,
    principal: PagePrincipal,
    accounts: AccountServiceDep,
    imports: ImportServiceDep,
    settings: SettingsDep,
    tr: TranslatorDep,
) -> Response:
    organization, organizations = await _current_organization(accounts, principal, text(form, "org"))
    file = upload(form, "file")
    try:
        if file is None:
            raise Invalid("No file.", field="file")
        # The form's file is Starlette's UploadFile, which FastAPI's (the endpoint's annotation) only renames.
        sent = cast("FastAPIUploadFile", file)
        out = await import_api.upload_import(organization.id, sent, principal, imports, settings, Response())
    except Invalid as exc:
        message = (
            tr.gettext("Choose the product file: CSV or Excel (XLSX).")
            if file is None
            else tr.gettext("This file cannot be read: %(why)s", why=exc.message)
        )
        page = render(
            request,
            "import_new.html",
            {"organization": organization, "organizations": organizations, "error": message},
            status_code=422,
            principal=principal,
        )
        raise PageRejected(page) from None
    return see_other(f"/imports/{out.id}")


# An import error on the page: what the clerk should do, in the page's language. The API's messages are English
# (with the row's details); its ``code`` and column say which of these applies.
IMPORT_PROBLEMS: dict[str, str] = {
    "formula": N_("A spreadsheet would run this as a formula: remove the first character (= + - or @)."),
    "duplicate_sku": N_("This SKU is on another row for the same household too: keep one row per SKU."),
    "unknown_household": N_(
        "No member household has this phone number or member code. Check it, or add the household on the "
        "Members page first."
    ),
    "archived": N_("This product is archived: restore it on the Products page first, or use another SKU."),
    "below_reserved": N_("The stock cannot be less than what open orders already hold."),
    "product_conflict": N_("Rows of one product must have the same name, category, dates and description."),
}
COLUMN_HINTS: dict[str, str] = {
    "household": N_("Enter the member's phone number or member code, or leave it empty for your own products."),
    "sku": N_("Enter the SKU, e.g. SR-RI6-1KG."),
    "name": FIELD_MESSAGES["name"],
    "variant_name": N_("Enter the size or pack, e.g. Hộp 1 kg."),
    "category": FIELD_MESSAGES["category"],
    "unit": FIELD_MESSAGES["unit"],
    "price_vnd": FIELD_MESSAGES["price"],
    "on_hand": FIELD_MESSAGES["stock"],
    "weight_grams": FIELD_MESSAGES["weight"],
    "harvest_date": FIELD_MESSAGES["harvest_date"],
    "shelf_life_days": N_("Enter the shelf life in days as a whole number, e.g. 90."),
    "description": N_("Check the description: it may be too long."),
}


def import_problem(error: RowErrorOut, tr: Translator) -> str:
    if error.code in IMPORT_PROBLEMS:
        return tr.gettext(IMPORT_PROBLEMS[error.code])
    if error.code == "file":
        return tr.gettext("The file cannot be used: %(why)s", why=error.message)
    field = field_for(error.column)
    hint = tr.gettext(COLUMN_HINTS.get(field or "", CHECK_THIS))
    if error.code == "empty":
        return tr.gettext("This cell cannot be empty.") + " " + hint
    return hint


@router.get("/imports/{import_id}")
async def import_page(
    request: Request, import_id: uuid.UUID, principal: PagePrincipal, imports: ImportServiceDep, tr: TranslatorDep
) -> Response:
    out = await import_api.get_import(import_id, principal, imports)
    working = out.status in (ImportStatus.validating, ImportStatus.applying)
    return render(
        request,
        "import.html",
        {
            "job": out,
            "problems": [(error, import_problem(error, tr)) for error in out.errors],
            "working": working,
            "refresh": IMPORT_REFRESH_SECONDS if working else None,
            "can_apply": out.status is ImportStatus.previewed,
        },
        principal=principal,
    )


@router.post("/imports/{import_id}/apply")
async def apply_file(
    form: CheckedForm,
    request: Request,
    import_id: uuid.UUID,
    principal: PagePrincipal,
    imports: ImportServiceDep,
    settings: SettingsDep,
    tr: TranslatorDep,
) -> Response:
    mode = Mode.valid_rows if text(form, "mode") == Mode.valid_rows.value else Mode.all_or_nothing
    body = ApplyIn(mode=mode, zero_missing=text(form, "zero_missing") == "1")
    try:
        await import_api.apply_import(import_id, body, principal, imports, settings, Response())
    except (Conflict, Invalid) as exc:
        out = await import_api.get_import(_uuid(str(import_id)), principal, imports)
        page = render(
            request,
            "import.html",
            {
                "job": out,
                "working": False,
                "refresh": None,
                "can_apply": out.status is ImportStatus.previewed,
                "error": tr.gettext(
                    "Some rows have errors, so the file cannot be applied all together. Fix them and upload the "
                    "file again, or apply only the valid rows."
                )
                if exc.field == "mode"
                else tr.gettext("This file was applied already, or its check is not finished yet."),
            },
            status_code=exc.status_code,
            principal=principal,
        )
        raise PageRejected(page) from None
    return see_other(f"/imports/{import_id}")
