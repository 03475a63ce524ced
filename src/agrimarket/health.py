"""Liveness, readiness and metrics: the operations endpoints."""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from agrimarket.db import reader
from agrimarket.migrate import current_revision
from agrimarket.observability import render_metrics

router = APIRouter(tags=["operations"])
READY_TIMEOUT_SECONDS = 5.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready: database unreachable or not migrated."}})
async def readyz(request: Request) -> JSONResponse:
    """Ready to serve: the database answers and its schema is at the latest migration."""
    state = request.app.state
    try:
        # Bounded, so probes never pile up on a database that does not answer (a lost host hangs a TCP connect).
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            # A deferred transaction on SQLite: a probe must not queue for the write lock behind busy writers.
            async with reader(state.engine).connect() as connection:
                await connection.execute(text("SELECT 1"))
                revision = await connection.run_sync(current_revision)
                await connection.rollback()
    except Exception as exc:  # any failure to reach the database means "not ready"
        return JSONResponse({"status": "unavailable", "database": f"unreachable: {type(exc).__name__}"}, 503)
    head = state.migration_head
    if revision != head:
        return JSONResponse(
            {"status": "unavailable", "database": "reachable", "migration": revision, "expected": head}, 503
        )
    return JSONResponse({"status": "ok", "database": "reachable", "migration": revision})


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus metrics; with several server processes, all of them added up."""
    token = request.app.state.settings.metrics_token
    if token is not None and not hmac.compare_digest(
        request.headers.get("authorization", "").encode(), f"Bearer {token.get_secret_value()}".encode()
    ):
        return Response("metrics need the bearer token set in AGRIMARKET_METRICS_TOKEN\n", status_code=401)
    # A plain def: FastAPI runs it in the thread pool, so reading the multiprocess files never blocks the loop.
    body, content_type = render_metrics(request.headers.get("accept"))
    return Response(body, headers={"Content-Type": content_type})
