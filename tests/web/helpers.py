"""Reading the pages as a browser would (stdlib ``html.parser``), and filling in their forms."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import httpx

from tests.factories import PASSWORD, new_phone
from tests.media.images import jpeg, photo

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}
FIELD_TAGS = {"input", "select", "textarea"}
UNLABELLED_TYPES = {"hidden", "submit", "button", "reset", "image"}


@dataclass(eq=False)
class Control:
    tag: str
    attrs: dict[str, str]
    inside_label: bool = False


@dataclass
class Page(HTMLParser):
    """What a test needs from a page: ``lang``, the form controls and their labels, the CSS and JS it links."""

    lang: str | None = None
    controls: list[Control] = field(default_factory=list)
    label_for: set[str] = field(default_factory=set)
    stylesheets: list[str] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)
    inline_code: int = 0
    _label_depth: int = 0
    _in_code: bool = False

    def __post_init__(self) -> None:
        super().__init__(convert_charrefs=True)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "html":
            self.lang = values.get("lang")
        elif tag == "label":
            self._label_depth += 1
            if values.get("for"):
                self.label_for.add(values["for"])
        elif tag in FIELD_TAGS:
            self.controls.append(Control(tag, values, inside_label=self._label_depth > 0))
        elif tag == "link" and values.get("rel") == "stylesheet":
            self.stylesheets.append(values["href"])
        elif tag == "script" and values.get("src"):
            self.scripts.append(values["src"])
        self._in_code = tag in ("script", "style") and not values.get("src")

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._label_depth -= 1
        self._in_code = False

    def handle_data(self, data: str) -> None:
        if self._in_code:
            self.inline_code += len(data.encode())

    def unlabelled(self) -> list[Control]:
        """Controls a person fills in with no label naming them."""
        return [
            c
            for c in self.controls
            if c.attrs.get("type", "text") not in UNLABELLED_TYPES
            and c.attrs.get("id") not in self.label_for
            and not c.inside_label
        ]

    def inputs(self, name: str) -> list[Control]:
        return [c for c in self.controls if c.attrs.get("name") == name]


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def field_error(html: str, name: str) -> str | None:
    """The message shown beside a field (``<p class="err" id="e-<name>">``)."""
    match = re.search(rf'<p class="err" id="e-{name}">([^<]*)</p>', html)
    return match.group(1) if match else None


def input_value(html: str, name: str) -> str | None:
    match = re.search(rf'<input id="f-{name}" name="{name}" type="[a-z]+" value="([^"]*)"', html)
    return match.group(1) if match else None


async def post_form(
    client: httpx.AsyncClient,
    url: str,
    data: dict[str, Any],
    *,
    page: str | None = None,
    files: dict[str, Any] | None = None,
) -> httpx.Response:
    """POST a form as the browser does from ``page`` (default: the form's own URL): its CSRF token, same-origin."""
    token_page = await client.get(page or url)
    return await client.post(url, data={"csrf_token": csrf(token_page.text), **data}, files=files, headers=SAME_ORIGIN)


@dataclass
class WebUser:
    phone: str
    organization_id: str


async def register(
    client: httpx.AsyncClient, *, name: str = "Hộ Trần Thị Bình", phone: str | None = None, kind: str = "household"
) -> WebUser:
    """Register through the page (the client keeps the session cookie), and find the organization's id."""
    phone = phone or new_phone()
    response = await post_form(
        client,
        "/register",
        {
            "phone": phone,
            "full_name": "Trần Thị Bình",
            "organization_name": name,
            "organization_kind": kind,
            "password": PASSWORD,
        },
    )
    assert response.status_code == 303, response.text
    me = await client.get("/api/v1/me")
    return WebUser(phone=phone, organization_id=me.json()["organizations"][0]["id"])


def photo_file(seed: int = 1) -> tuple[str, io.BytesIO, str]:
    return ("sau-rieng.jpg", io.BytesIO(jpeg(photo((800, 600), seed=seed))), "image/jpeg")


PRODUCT = {
    "name": "Sầu riêng Ri6",
    "category": "fruit",
    "unit": "kg",
    "price": "120.000",
    "stock": "0",
    "weight": "1000",
    "harvest_date": "2025-06-01",
}


async def add_product(client: httpx.AsyncClient, user: WebUser, **fields: Any) -> str:
    """Add a product through the page; returns its id (from the redirect's anchor)."""
    files = {"photo": fields.pop("photo")} if "photo" in fields else None
    response = await post_form(
        client,
        "/products/new",
        {**PRODUCT, "org": user.organization_id, **fields},
        page=f"/products/new?org={user.organization_id}",
        files=files,
    )
    assert response.status_code == 303, response.text
    return response.headers["location"].rsplit("#p-", 1)[1]
