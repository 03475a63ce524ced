"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from agrimarket.migrate import current_revision

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready: database unreachable or not migrated."}})
async def readyz(request: Request) -> JSONResponse:
    """Ready to serve: the database answers and its schema is at the latest migration."""
    state = request.app.state
    try:
        async with state.engine.connect() as connection:
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
