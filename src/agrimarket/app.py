"""The application factory and its lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from agrimarket import migrate
from agrimarket.config import Settings, get_settings
from agrimarket.db import create_engine, make_sessionmaker, reader
from agrimarket.errors import AgriMarketError
from agrimarket.kit.memory import freeze_long_lived
from agrimarket.observability import ObservabilityMiddleware, configure_logging, get_logger

if TYPE_CHECKING:
    from agrimarket.media.storage import Storage

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


_HTTP_CODES = {401: "not_authenticated", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    """The framework's own refusals (no such route, wrong method) in our error shape."""
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        {"code": _HTTP_CODES.get(exc.status_code, "http_error"), "message": str(exc.detail)},
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def _data_error(_request: Request, exc: Exception) -> JSONResponse:
    # The database refused a value the validation let through (a NUL byte, a number out of its range): the
    # caller's input, so a 422, never a 500. Validation at the edges should make this rare; it is the safety net.
    log.warning("data_error", error=str(getattr(exc, "orig", exc))[:300])
    return JSONResponse(
        {
            "code": "invalid",
            "message": "A value in the request cannot be stored: check for odd characters or huge numbers.",
        },
        status_code=422,
    )


def create_app(settings: Settings | None = None, *, companions: list[Companion] | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.check_secrets()
    configure_logging(json_logs=settings.json_logs, level=settings.log_level)
    # The in-process worker (if enabled) enters last, so it stops before the companions its handlers use;
    # the photo thread pool enters first, so it stops after everything that may still send it work.
    companion_factories = [_media_executor, *(companions or [])]

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
                log.info(
                    "started",
                    database=engine.url.render_as_string(hide_password=True),
                    frozen_objects=freeze_long_lived(),
                )
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
    app.state.media_storage = _media_storage(settings)
    app.add_exception_handler(AgriMarketError, _agrimarket_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    _include_routers(app)
    if settings.demo_enabled:
        from agrimarket import demo
        from agrimarket.payments import demo as storefront_demo

        companion_factories.extend(demo.install(app, settings))
        companion_factories.extend(storefront_demo.install(app, settings))
    companion_factories.append(_in_process_worker)
    # Added last, so it is the outermost middleware: its request id and timing cover every other one.
    app.add_middleware(ObservabilityMiddleware)
    return app


def _media_storage(settings: Settings) -> Storage:
    # Made here rather than in the lifespan: building it does no I/O, and apps run without a lifespan (tests)
    # serve photos too.
    from agrimarket.media.storage import storage_for

    return storage_for(
        settings.media_storage_url, settings.data_dir, public_base_url=settings.media_public_base_url or None
    )


@asynccontextmanager
async def _media_executor(_app: FastAPI) -> AsyncIterator[None]:
    """On the way out, let photo work in progress finish and drop the pool (a later app makes a new one)."""
    from agrimarket.media.pipeline import cpu_executor

    try:
        yield
    finally:
        if cpu_executor.cache_info().currsize:
            executor = cpu_executor()
            cpu_executor.cache_clear()
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)


def _in_process_worker(app: FastAPI) -> Any:
    from agrimarket.worker.commands import worker_companion

    return worker_companion(app)


def _include_routers(app: FastAPI) -> None:
    from agrimarket.accounts.endpoints import router as accounts_router
    from agrimarket.catalog.endpoints import router as catalog_router
    from agrimarket.channels.endpoints import router as channels_router
    from agrimarket.health import router as health_router
    from agrimarket.imports.endpoints import router as imports_router
    from agrimarket.imports.endpoints import upload_body_limit as import_body_limit
    from agrimarket.inventory.endpoints import router as stock_router
    from agrimarket.media.endpoints import files_router as media_files_router
    from agrimarket.media.endpoints import router as photos_router
    from agrimarket.media.endpoints import upload_body_limit
    from agrimarket.orders.endpoints import router as orders_router
    from agrimarket.payments import gateway as payments_gateway
    from agrimarket.payments.endpoints import router as storefront_router
    from agrimarket.payments.endpoints import webhook_router as stripe_webhook_router
    from agrimarket.web.routes import router as web_router
    from agrimarket.webhooks.endpoints import add_push_route, inbox_router
    from agrimarket.worker.endpoints import router as jobs_router

    # Routes are matched in order, one by one: the marketplaces' pushes, the busiest by far, are matched first.
    add_push_route(app)
    for router in (
        health_router,
        accounts_router,
        jobs_router,
        catalog_router,
        stock_router,
        channels_router,
        media_files_router,
        orders_router,
        stripe_webhook_router,
        inbox_router,
        storefront_router,
    ):
        app.include_router(router)
    # The storefront channel's adapter (a refund on cancel) is built without settings: these are in force.
    payments_gateway.configure(app.state.settings)
    # A photo larger than the limit is refused as its body arrives, before the multipart form is parsed.
    app.include_router(photos_router, max_body_size=upload_body_limit(app.state.settings))
    app.include_router(imports_router, max_body_size=import_body_limit(app.state.settings))
    # The farmer's pages (at /, outside /api): their forms carry photos too, so the same body limit.
    app.include_router(web_router, max_body_size=upload_body_limit(app.state.settings))
