"""The application factory and its lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from agrimarket import migrate
from agrimarket.config import Settings, get_settings
from agrimarket.db import create_engine, make_sessionmaker, reader
from agrimarket.errors import AgriMarketError
from agrimarket.observability import ObservabilityMiddleware, configure_logging, get_logger

log = get_logger(__name__)

# Services that run beside the API in one process (the in-process worker, and later the sandboxes).
# Each is an async context manager factory taking the app; it starts on enter and stops on exit.
Companion = Callable[[FastAPI], Any]


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _agrimarket_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AgriMarketError)
    return JSONResponse(exc.to_dict(), status_code=exc.status_code)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": _field_of(tuple(err.get("loc", ()))), "message": str(err.get("msg", "is not valid"))}
        for err in exc.errors()
    ]
    first = errors[0] if errors else {"field": "body", "message": "is not valid"}
    return JSONResponse(
        {
            "code": "invalid",
            "message": f"{first['field']}: {first['message']}",
            "field": first["field"],
            "errors": errors,
        },
        status_code=422,
    )


async def _integrity_error(_request: Request, exc: Exception) -> JSONResponse:
    # A race past the service's own checks (two requests creating the same SKU at once): a conflict, not a 500.
    log.warning("integrity_error", error=str(exc.__cause__ or exc)[:300])
    return JSONResponse(
        {
            "code": "conflict",
            "message": "This conflicts with data saved at the same moment. Reload and try again.",
        },
        status_code=409,
    )


def create_app(settings: Settings | None = None, *, companions: list[Companion] | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.check_secrets()
    configure_logging(json_logs=settings.json_logs, level=settings.log_level)
    # The in-process worker (if enabled) enters last, so it stops before the companions its handlers use.
    companion_factories = [*(companions or []), _in_process_worker]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.should_auto_migrate:
            await asyncio.to_thread(migrate.upgrade, settings)
        engine = create_engine(settings)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.read_sessionmaker = make_sessionmaker(reader(engine))
        app.state.migration_head = migrate.head_revision(settings)
        try:
            async with AsyncExitStack() as stack:
                for factory in companion_factories:
                    await stack.enter_async_context(factory(app))
                log.info("started", database=engine.url.render_as_string(hide_password=True))
                yield
        finally:
            await engine.dispose()

    app = FastAPI(
        title="AgriMarket",
        version="0.1.0",
        summary="List farm produce once; sell it on every marketplace; never sell the same fruit twice.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_exception_handler(AgriMarketError, _agrimarket_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    _include_routers(app)
    # Added last, so it is the outermost middleware: its request id and timing cover every other one.
    app.add_middleware(ObservabilityMiddleware)
    return app


def _in_process_worker(app: FastAPI) -> Any:
    from agrimarket.worker.commands import worker_companion

    return worker_companion(app)


def _include_routers(app: FastAPI) -> None:
    from agrimarket.accounts.endpoints import router as accounts_router
    from agrimarket.catalog.endpoints import router as catalog_router
    from agrimarket.health import router as health_router
    from agrimarket.inventory.endpoints import router as stock_router
    from agrimarket.worker.endpoints import router as jobs_router

    for router in (health_router, accounts_router, jobs_router, catalog_router, stock_router):
        app.include_router(router)
