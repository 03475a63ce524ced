"""Forms on the farmer's pages: the CSRF token every POST carries, lenient parsing of what people type on a phone,
and validation errors turned into messages shown next to their field.

CSRF. A token is an HMAC (keyed with the secret key) of the browser's session cookie, or, before login, of a random
pre-session cookie set with the first page. Every POST must carry it (``csrf_token`` field) and must not come from
another site (``Sec-Fetch-Site``, sent by every current browser); both refusals are 403. The session cookie is
HttpOnly and SameSite=Lax as well, so a cross-site POST does not even carry it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.responses import Response

from agrimarket.config import Settings
from agrimarket.errors import Forbidden
from agrimarket.kit.text import clean_line
from agrimarket.web.i18n import N_, Translator

CSRF_FIELD = "csrf_token"
PRESESSION_COOKIE = "agrimarket_presession"
SAFE_SITES = frozenset({"same-origin", "none"})
MAX_FORM_FIELDS = 50

CHECK_THIS = N_("Check this value.")
CSRF_REFUSED = N_("This form has expired or did not come from this site. Go back, reload the page and try again.")
CROSS_SITE_REFUSED = N_("A form sent from another website was refused.")


class CsrfRefused(Forbidden):
    """403 with the reason shown on the error page."""


def _binder(request: Request, settings: Settings) -> str | None:
    return request.cookies.get(settings.session_cookie_name) or request.cookies.get(PRESESSION_COOKIE)


def _sign(settings: Settings, binder: str) -> str:
    assert settings.secret_key is not None  # filled by Settings.check_secrets at start-up
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, f"csrf|{binder}".encode(), hashlib.sha256).hexdigest()[:40]


def csrf_token(request: Request, settings: Settings) -> str:
    """The token for forms on this page; before login, starts a pre-session (its cookie is set by ``render``)."""
    binder = _binder(request, settings)
    if binder is None:
        binder = getattr(request.state, "new_presession", None) or secrets.token_urlsafe(24)
        request.state.new_presession = binder
    return _sign(settings, binder)


def set_presession_cookie(request: Request, response: Response, settings: Settings) -> None:
    binder = getattr(request.state, "new_presession", None)
    if binder is not None:
        response.set_cookie(
            PRESESSION_COOKIE, binder, httponly=True, samesite="lax", secure=settings.secure_cookies, path="/"
        )


def check_site(request: Request) -> None:
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in SAFE_SITES:
        raise CsrfRefused(CROSS_SITE_REFUSED)


async def checked_form(request: Request) -> FormData:
    """The POSTed form, once its origin and CSRF token are checked. Declare it as the endpoint's first parameter:
    the body (a photo over a slow connection) is then read before any database transaction begins."""
    check_site(request)
    settings: Settings = request.app.state.settings
    form = await request.form(max_files=2, max_fields=MAX_FORM_FIELDS)
    sent = form.get(CSRF_FIELD)
    binder = _binder(request, settings)
    if not isinstance(sent, str) or binder is None or not hmac.compare_digest(sent, _sign(settings, binder)):
        raise CsrfRefused(CSRF_REFUSED)
    return form


CheckedForm = Annotated[FormData, Depends(checked_form)]


# -- reading fields -------------------------------------------------------------------------------------------------


def text(form: FormData, name: str) -> str:
    """A one-line text field as the person meant it: NFC, control characters dropped, spaces folded."""
    value = form.get(name)
    return clean_line(value) if isinstance(value, str) else ""


def upload(form: FormData, name: str) -> UploadFile | None:
    """The file chosen in a file input, or None when none was (browsers still send an empty part)."""
    value = form.get(name)
    if isinstance(value, UploadFile) and (value.filename or value.size):
        return value
    return None


_SPACES = re.compile(r"[\s\u00a0\u202f]+")
_GROUPED = re.compile(r"\d{1,3}([.,]\d{3})+")
_CURRENCY = re.compile(r"(₫|vnđ|vnd|đồng|đ|dong)$", re.IGNORECASE)


def parse_whole_number(raw: str) -> int | None:
    """``1.000``, ``1,000``, ``1 000`` and ``1000`` are all 1000; anything else (decimals, letters) is None."""
    value = _SPACES.sub("", raw)
    if value.isdigit() and value.isascii():
        return int(value)
    if _GROUPED.fullmatch(value) and len({ch for ch in value if not ch.isdigit()}) == 1:
        return int(re.sub(r"[.,]", "", value))
    return None


def parse_vnd(raw: str) -> int | None:
    """What people type for a price, as whole đồng: ``120.000``, ``120000``, ``120.000 ₫``, ``120,000đ``,
    ``120k`` (thousands, as shops write it). None when it is not a whole amount."""
    value = _CURRENCY.sub("", _SPACES.sub("", raw).lower())
    thousands = value.endswith("k")
    amount = parse_whole_number(value.removesuffix("k"))
    if amount is None:
        return None
    return amount * 1000 if thousands else amount


def parse_date(raw: str) -> date | None:
    """A date input's value (``YYYY-MM-DD``); browsers without a date picker let people type ``1/6/2025`` too."""
    value = raw.strip()
    try:
        return date.fromisoformat(value)
    except ValueError:
        pass
    match = re.fullmatch(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})", value)
    if match:
        day, month, year = (int(part) for part in match.groups())
        try:
            return date(year, month, day)
        except ValueError:
            return None
    return None


# -- errors next to their field -------------------------------------------------------------------------------------


class FieldErrors(dict[str, str]):
    """Form field name → the message shown beside it, already in the page's language."""


# What each form field asks for, shown beside it when its value is refused (pydantic's own wording is English and
# technical, and the catalog's messages name API fields).
FIELD_MESSAGES: Mapping[str, str] = {
    "name": N_("Enter the product name (at most 200 characters)."),
    "category": N_("Choose a category from the list."),
    "unit": N_("Choose a unit from the list."),
    "price": N_("Enter the price in đồng, e.g. 120.000 (from 1 to 1.000.000.000)."),
    "stock": N_("Enter the stock as a whole number, 0 or more, e.g. 25."),
    "weight": N_("Enter the shipping weight in grams, e.g. 1000 for 1 kg (at most 100.000)."),
    "harvest_date": N_("Enter the harvest date, e.g. 01/06/2025."),
    "phone": N_("Enter a Vietnamese mobile number, e.g. 0912 345 678."),
    "password": N_("Use a password of 8 to 128 characters."),
    "full_name": N_("Enter your name (at most 200 characters)."),
    "organization_name": N_("Enter the name of your farm or cooperative (at most 200 characters)."),
    "organization_kind": N_("Choose household or cooperative."),
    "photo": N_("This is not a photo we can use. Take it again, or choose a JPEG, PNG, WebP or HEIC photo."),
}


def pydantic_errors(
    exc: ValidationError, tr: Translator, field_of: Mapping[tuple[Any, ...], str] | None = None
) -> FieldErrors:
    """Each refused value's form field with the message that says what to type; the first error per field wins."""
    errors = FieldErrors()
    for error in exc.errors():
        loc = tuple(error.get("loc", ()))
        name = (field_of or {}).get(loc) or (str(loc[-1]) if loc else "")
        if name and name not in errors:
            errors[name] = tr.gettext(FIELD_MESSAGES.get(name, CHECK_THIS))
    return errors


def field_error(name: str, tr: Translator) -> str:
    return tr.gettext(FIELD_MESSAGES.get(name, CHECK_THIS))


def local_path(raw: str | None, default: str = "/") -> str:
    """Where to go back to: only a path on this site (no ``//host`` or ``https://…``: no open redirect)."""
    if raw and raw.startswith("/") and not raw.startswith(("//", "/\\")) and "\n" not in raw and "\r" not in raw:
        return raw
    return default
