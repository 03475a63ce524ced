"""How a page is made: templates, the static files, who is asking, and errors as pages instead of JSON."""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.exc import DataError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from agrimarket.accounts.repository import AccountRepository
from agrimarket.accounts.service import AccountService, Principal
from agrimarket.config import Settings
from agrimarket.deps import SessionDep, get_optional_principal
from agrimarket.errors import AgriMarketError, Forbidden, NotFound, PayloadTooLarge, TooManyRequests
from agrimarket.observability import get_logger
from agrimarket.web.forms import CsrfRefused, csrf_token, set_presession_cookie
from agrimarket.web.i18n import N_, Translator, translator

log = get_logger(__name__)

WEB_DIR = Path(__file__).resolve().parent
STATIC_DIR = WEB_DIR / "static"
STATIC_PATH = "/static"

templates = Jinja2Templates(
    env=Environment(
        loader=FileSystemLoader(WEB_DIR / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
)


# -- static files: versioned by content, cached for good ------------------------------------------------------------


@dataclass(frozen=True)
class StaticFile:
    path: Path
    version: str
    media_type: str


@cache
def static_files() -> dict[str, StaticFile]:
    files = {}
    for path in sorted(STATIC_DIR.iterdir()):
        if path.is_file():
            media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            version = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            files[path.name] = StaticFile(path, version, media_type)
    return files


def static_url(name: str) -> str:
    """``/static/app.css?v=<content hash>``: a new version is a new URL, so the old one can be cached forever."""
    return f"{STATIC_PATH}/{name}?v={static_files()[name].version}"


# -- page responses -------------------------------------------------------------------------------------------------

PAGE_HEADERS = {
    # A page holds a form token and the farm's data: never kept by a shared cache, always re-checked.
    "Cache-Control": "private, no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",  # a one-tap stock button must not be clickable through someone else's frame
}


def _csp(settings: Settings) -> str:
    images = "'self'"
    if settings.media_public_base_url:
        parts = urlsplit(settings.media_public_base_url)
        images += f" {parts.scheme}://{parts.netloc}"
    return (
        f"default-src 'self'; img-src {images}; style-src 'self'; script-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    principal: Principal | None = None,
) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    tr = translator(request)
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    values: dict[str, Any] = {
        "tr": tr,
        "_": tr.gettext,
        "ngettext": tr.ngettext,
        "lang": tr.locale,
        "csrf_token": csrf_token(request, settings),
        "static": static_url,
        "here": here,
        "user": principal.user if principal else None,
        **(context or {}),
    }
    headers = {**PAGE_HEADERS, "Content-Security-Policy": _csp(settings)}
    response = templates.TemplateResponse(request, template, values, status_code=status_code, headers=headers)
    set_presession_cookie(request, response, settings)
    return response


def see_other(url: str) -> RedirectResponse:
    """After a POST: the browser GETs the page (a reload never sends the form twice)."""
    return RedirectResponse(url, status_code=303)


class LoginRequired(Exception):  # a signal, not a failure
    """The page needs a logged-in person: sent to the login page, and back here after."""


class PageRejected(Exception):  # a signal carrying the page to answer with
    """Answer with this page, and roll the request's transaction back (a form refused after a write began)."""

    def __init__(self, response: Response) -> None:
        super().__init__("page rejected")
        self.response = response


_TITLES: dict[int, str] = {
    403: N_("Not allowed"),
    404: N_("Not found"),
    409: N_("Changed in the meantime"),
    413: N_("Photo too large"),
    422: N_("Check what you entered"),
    429: N_("Too many attempts"),
}
_MESSAGES: dict[int, str] = {
    403: N_("You cannot do this here."),
    404: N_("This page does not exist, or it belongs to another farm."),
    409: N_("Someone changed this at the same moment. Reload the page and try again."),
    413: N_("This photo is too large. Take it again with the camera's normal size setting."),
    422: N_("Something you entered cannot be used. Go back and check it."),
    429: N_("Too many attempts. Wait a few minutes and try again."),
}


def error_page(request: Request, status_code: int, message: str | None = None) -> HTMLResponse:
    tr = translator(request)
    title = _TITLES.get(status_code, N_("Something went wrong"))
    text = message or _MESSAGES.get(status_code, N_("Something went wrong. Try again in a moment."))
    return render(
        request, "error.html", {"title": tr.gettext(title), "message": tr.gettext(text)}, status_code=status_code
    )


def _status_of(exc: Exception) -> tuple[int, str | None]:
    if isinstance(exc, CsrfRefused):
        return 403, exc.message  # our own msgid
    if isinstance(exc, RequestValidationError):
        return 404, None  # a malformed id in the address: no such page
    if isinstance(exc, IntegrityError):
        return 409, None
    if isinstance(exc, DataError):
        return 422, None
    if isinstance(exc, (NotFound, Forbidden, PayloadTooLarge, TooManyRequests, AgriMarketError)):
        return exc.status_code, None
    assert isinstance(exc, StarletteHTTPException)
    return exc.status_code, None


async def _rolled_back_on_failure(
    handler: Callable[[Request], Coroutine[Any, Any, Response]], request: Request
) -> Response:
    """The request's transaction commits after the route's handler returns, and a page route answers its failures
    with a page (it returns): so what the failed request wrote is rolled back here first."""
    try:
        return await handler(request)
    except BaseException:
        if (session := getattr(request.state, "page_session", None)) is not None:
            await session.rollback()
        raise


async def remember_session(request: Request, session: SessionDep) -> None:
    """Router dependency: the request's session, for ``_rolled_back_on_failure`` (it begins at its first query)."""
    request.state.page_session = session


class PageRoute(APIRoute):
    """A page's failures answer as pages in the reader's language; a missing login sends them to log in."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await _rolled_back_on_failure(handler, request)
            except LoginRequired:
                here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return see_other(f"/login?next={quote(here, safe='/')}")
            except PageRejected as rejected:
                return rejected.response
            except (AgriMarketError, RequestValidationError, StarletteHTTPException, IntegrityError, DataError) as exc:
                status_code, message = _status_of(exc)
                if status_code >= 500 or isinstance(exc, (IntegrityError, DataError)):
                    log.warning("page_error", path=request.url.path, error=repr(exc)[:300])
                return error_page(request, status_code, message)

        return page_handler


# -- who is asking --------------------------------------------------------------------------------------------------


async def optional_page_principal(request: Request) -> Principal | None:
    """The logged-in person, looked up on a short read-only session of its own, so a page's writing transaction
    (which holds SQLite's write lock from its first statement) begins only when its service does."""
    settings: Settings = request.app.state.settings
    async with request.app.state.read_sessionmaker() as session:
        return await get_optional_principal(request, AccountService(AccountRepository(session)), settings)


async def page_principal(principal: Annotated[Principal | None, Depends(optional_page_principal)]) -> Principal:
    if principal is None:
        raise LoginRequired
    return principal


PagePrincipal = Annotated[Principal, Depends(page_principal)]
OptionalPagePrincipal = Annotated[Principal | None, Depends(optional_page_principal)]
TranslatorDep = Annotated[Translator, Depends(translator)]
