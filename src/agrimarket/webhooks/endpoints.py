"""Marketplace pushes in (``POST /webhooks/{channel}/{connection_id}``), and the inbox API to look and replay."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.applications import Starlette
from starlette.routing import Match, Route
from starlette.types import Scope

from agrimarket.channels.endpoints import get_channels
from agrimarket.config import Settings
from agrimarket.deps import PrincipalDep, SessionDep
from agrimarket.errors import AgriMarketError, NotFound, PayloadTooLarge
from agrimarket.kit.pagination import Cursor, Page
from agrimarket.observability import get_logger
from agrimarket.sync.runtime import runtime
from agrimarket.webhooks.intake import PushIntake, RawPush
from agrimarket.webhooks.repository import InboxRepository, InboxRow
from agrimarket.webhooks.schemas import InboundEventOut, InboxStatus
from agrimarket.webhooks.service import (
    MAX_PUSH_BYTES,
    PUSHES,
    InboxService,
    InvalidPushSignature,
    MalformedPush,
    safe_headers,
    status_of,
)

log = get_logger(__name__)

inbox_router = APIRouter(prefix="/api/v1", tags=["inbox"])

LIST_BODY_CHARS = 1_000
DETAIL_BODY_CHARS = 64_000


# -- pushes -------------------------------------------------------------------------------------------------------


async def read_body(request: Request, limit: int = MAX_PUSH_BYTES) -> bytes:
    """The raw body, exactly as sent, refused with 413 past ``limit`` bytes: at once when Content-Length says so,
    else as soon as the chunks received go over it (nothing more is read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"A push is at most {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"A push is at most {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


_OUTCOMES: dict[type[AgriMarketError], str] = {
    PayloadTooLarge: "too_large",
    NotFound: "not_found",
    InvalidPushSignature: "invalid_signature",
    MalformedPush: "malformed",
}


def push_intake(request: Request) -> PushIntake:
    """The app's intake (made on first use: tests build apps without running their lifespan)."""
    state = request.app.state
    intake: PushIntake | None = getattr(state, "push_intake", None)
    if intake is None:
        settings: Settings = state.settings
        intake = state.push_intake = PushIntake(settings, runtime(settings).http)
    return intake


PUSH_PATH = "/webhooks/{channel}/{connection_id}"


async def receive_push(request: Request) -> Response:
    """``POST /webhooks/{channel}/{connection_id}``: keep a verified push in the inbox (once) and queue its handling;
    answer 200 with an empty body once it is committed (Shopee requires the empty body; a redelivery gets the same
    answer). 413 for an oversized body, 404 for no such connected shop (or no secret to verify with), 401 for a bad
    or missing signature (nothing stored), 400 for a signed body that cannot be read. Pushes arriving together are
    kept in one transaction (:mod:`agrimarket.webhooks.intake`).

    A plain Starlette route (:func:`add_push_route`), not a FastAPI one: it takes nothing FastAPI would validate or
    inject (the body is read raw, for its signature), and FastAPI's per-request dependency solving was a tenth of a
    push's cost under a burst. Errors still go through the app's handlers and every middleware."""
    channel = str(request.path_params["channel"])
    connection_id = str(request.path_params["connection_id"])
    registry = await get_channels(request)
    label = channel if channel in registry else "unknown"  # the metric's labels stay a closed set
    intake = push_intake(request)
    try:
        with intake.expecting():
            body = await read_body(request)
        try:
            found_id = uuid.UUID(connection_id)
        except ValueError:
            raise NotFound("No connected shop receives pushes here.") from None
        if channel not in registry:
            raise NotFound("No connected shop receives pushes here.")
        plugin = registry.get(channel)
        kept = await intake.submit(
            RawPush(channel, found_id, request.headers, body), plugin, request.app.state.sessionmaker
        )
    except AgriMarketError as error:
        outcome = _OUTCOMES.get(type(error), "refused")
        PUSHES.labels(label, outcome).inc()
        if isinstance(error, InvalidPushSignature | MalformedPush):
            log.warning(
                "webhook_refused",
                channel=label,
                connection_id=connection_id,
                outcome=outcome,
                reason=error.details.get("reason") or error.message,
                client=request.client.host if request.client else None,
            )
        raise
    PUSHES.labels(channel, "stored" if kept.event_id is not None else "duplicate").inc()
    return Response(status_code=200)


class _PushRoute(Route):
    """Starlette's route, naming itself in the scope as FastAPI's do (the access log and metrics label requests
    by their route's template, never the raw path)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


def add_push_route(app: Starlette) -> None:
    """The pushes' route, ahead of every route added after it (routes are matched in order: pushes are the
    busiest by far)."""
    app.router.routes.append(_PushRoute(PUSH_PATH, receive_push, methods=["POST"], include_in_schema=False))


# -- the inbox API ------------------------------------------------------------------------------------------------


def get_inbox_service(session: SessionDep) -> InboxService:
    return InboxService(InboxRepository(session))


InboxServiceDep = Annotated[InboxService, Depends(get_inbox_service)]


def event_out(row: InboxRow, body_chars: int) -> InboundEventOut:
    event = row.event
    assert event.connection_id is not None  # rows come through their connection
    text = event.body.decode("utf-8", errors="replace")
    return InboundEventOut(
        id=event.id,
        organization_id=row.organization_id,
        connection_id=event.connection_id,
        channel=row.channel,
        source=event.source,
        external_id=event.external_id,
        event_type=event.event_type,
        order_ids=event.order_ids,
        status=status_of(row),
        received_at=event.received_at,
        handled_at=event.handled_at,
        attempts=event.attempts,
        last_error=event.last_error,
        # Filtered again on the way out: rows written by other code may have kept more.
        headers=safe_headers({str(k): str(v) for k, v in (event.headers or {}).items()}),
        body=text[:body_chars],
        body_size=len(event.body),
        body_truncated=len(text) > body_chars,
    )


@inbox_router.get("/organizations/{organization_id}/inbox")
async def list_inbox(
    organization_id: uuid.UUID,
    principal: PrincipalDep,
    inbox: InboxServiceDep,
    status: InboxStatus | None = None,
    connection_id: uuid.UUID | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[InboundEventOut]:
    """Pushes received from the organization's shops, newest first, with their handling state."""
    after = Cursor.decode(cursor) if cursor else None
    found = await inbox.page(
        principal.access,
        organization_id=organization_id,
        status=status,
        connection_id=connection_id,
        after=after,
        limit=limit + 1,
    )
    items = found[:limit]
    next_cursor = Cursor(items[-1].event.received_at, items[-1].event.id).encode() if len(found) > limit else None
    return Page[InboundEventOut](items=[event_out(row, LIST_BODY_CHARS) for row in items], next_cursor=next_cursor)


@inbox_router.get("/inbox/{event_id}")
async def get_inbound_event(event_id: uuid.UUID, principal: PrincipalDep, inbox: InboxServiceDep) -> InboundEventOut:
    """One received push, its body as text and its last handling error."""
    return event_out(await inbox.get(principal.access, event_id), DETAIL_BODY_CHARS)


@inbox_router.post("/inbox/{event_id}/replay")
async def replay_inbound_event(event_id: uuid.UUID, principal: PrincipalDep, inbox: InboxServiceDep) -> InboundEventOut:
    """Hand a push to the order pipeline again (admins and owners): it is marked unhandled and its shop's inbox
    drained at once. Harmless on a handled push: an order changes at most once per state."""
    return event_out(await inbox.replay(principal.access, event_id), DETAIL_BODY_CHARS)
