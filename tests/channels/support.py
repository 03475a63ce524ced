"""What the per-marketplace channel tests share: a clock the test moves, a receiver for the pushes a sandbox sends,
the ASGI client to a sandbox, the adapter built from a shop's credentials, and photo and listing-draft builders.

Each marketplace's ``conftest.py`` keeps only what is its own (addresses, settings, its sandbox, its sample
product)."""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from agrimarket.channels.base import ChannelAdapter, ChannelPlugin, ConnectionInfo, ImageRef, ListingDraft, VariantDraft
from agrimarket.sandbox.core import SandboxConfig

AdapterT = TypeVar("AdapterT", bound=ChannelAdapter)


class FakeClock:
    def __init__(self, now: float = 1_717_200_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class PushReceiver:
    """Every push a sandbox delivered to our callback URL: exact URL, headers and bytes."""

    delivered: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    def app(self, path: str = "/webhooks/{rest:path}", status_code: int = 200) -> Starlette:
        async def hook(request: Request) -> Response:
            self.delivered.append((str(request.url), dict(request.headers), await request.body()))
            return Response(status_code=status_code)

        return Starlette(routes=[Route(path, hook, methods=["POST"])])


def generous_config() -> SandboxConfig:
    """Generous enough that only the throttling tests meet the rate limit."""
    return SandboxConfig(rate_calls=10_000, burst=10_000, timeout_seconds=0.01)


@asynccontextmanager
async def asgi_client(app: ASGIApp, base_url: str = "") -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=base_url) as client:
        yield client


def connect_adapter(
    plugin: ChannelPlugin,
    kind: type[AdapterT],
    credentials: Mapping[str, Any],
    http: httpx.AsyncClient,
    settings: Mapping[str, Any],
    *,
    shop_id: str | None = None,
    callback_url: str | None = None,
) -> AdapterT:
    """The plugin's adapter for a new connection to the shop of ``credentials`` (its id as the plugin reads it,
    unless ``shop_id`` is given)."""
    connection = ConnectionInfo(
        connection_id=uuid.uuid4(),
        organization_id=uuid.uuid4(),
        external_shop_id=shop_id if shop_id is not None else plugin.shop_id(credentials),
        credentials=credentials,
        settings=settings,
        callback_url=callback_url,
    )
    adapter = plugin.adapter(connection, http)
    assert isinstance(adapter, kind)
    return adapter


def image_bytes(colour: tuple[int, int, int], side: int, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(buffer, fmt)
    return buffer.getvalue()


def photo(colour: tuple[int, int, int] = (200, 120, 40), side: int = 600, *, fmt: str = "JPEG") -> ImageRef:
    """A square photo of one colour, named by the SHA-256 of its bytes."""
    data = image_bytes(colour, side, fmt)
    return ImageRef(hashlib.sha256(data).hexdigest(), f"image/{fmt.lower()}", side, side, data)


def jpeg(color: tuple[int, int, int], side: int = 600) -> ImageRef:
    """A square JPEG of one colour, named by its colour."""
    data = image_bytes(color, side)
    return ImageRef(f"h{color[0]}-{color[1]}-{color[2]}", "image/jpeg", side, side, data)


def variant(
    sku: str,
    name: str,
    price: int = 120_000,
    stock: int = 10,
    *,
    weight_grams: int = 1000,
    unit: str = "hộp",
    **changes: Any,
) -> VariantDraft:
    return VariantDraft(
        sku=sku, name=name, price_vnd=price, stock=stock, weight_grams=weight_grams, unit=unit, **changes
    )


def listing(defaults: Mapping[str, Any], /, **changes: Any) -> ListingDraft:
    """A draft for a new product: a marketplace's sample ``defaults``, with the test's ``changes`` over them."""
    return ListingDraft(**{"product_id": uuid.uuid4(), **defaults, **changes})
