"""Structured logs (JSON outside development) with request id and organization, and Prometheus metrics.

Logs: structlog renders every line, its own and the standard library's (uvicorn, alembic, httpx), through one
``ProcessorFormatter`` on the root logger, so a deployment reads one format. Values bound with
:func:`bind_log_context` (request id, user, organization) appear on every line logged while the request runs.

Metrics: define them with :func:`counter`, :func:`gauge` and :func:`histogram`; ``/metrics`` exposes them. With
several server processes, set ``PROMETHEUS_MULTIPROC_DIR`` before the processes start (``agrimarket serve --workers
N`` does) and each process writes its values to files there that ``/metrics`` adds up.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, TextIO

import orjson
import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
REQUEST_ID_HEADER = b"x-request-id"

# ---------------------------------------------------------------------------------------------------------------
# Logs


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it), not the one seen at start-up."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def _render_json(event: Any, **options: Any) -> str:
    """A log line's JSON, by orjson; what it cannot encode natively goes to structlog's fallback (``default``)."""
    try:
        return orjson.dumps(event, default=options.get("default"), option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(event, **options)


def configure_logging(*, json_logs: bool, level: str) -> None:
    """One format for every line: structlog's own and the standard library's. Safe to call again."""
    level_number = logging.getLevelName(level.upper())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: list[Any] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(serializer=_render_json)]
        if json_logs
        else [structlog.dev.ConsoleRenderer()]  # renders exceptions itself, readably
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(level_number),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    handler = _StderrHandler()
    handler.set_name("agrimarket")
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )
    # What no line of ours shows is not gathered for each (the logging HOWTO's "Optimization"): the caller's file and
    # line (a walk up the stack, for every access line), the thread's and the process's names.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "agrimarket"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_number)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "alembic"):
        # Drop handlers a server or an alembic.ini installed, so their lines reach the root handler only, in our format.
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # The access middleware below logs every request, with its id; uvicorn's own access line would repeat it.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every outgoing request at INFO with its whole URL, and Shopee's and Lazada's carry the shop's access
    # token in the query string: never in the logs (the sync and the drain log what they did with the calls).
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


# The fields bound for the current request, shared by reference: a value bound where the context is a copy
# (a sync dependency run in the thread pool, a task) still reaches the request's access line.
_request_fields: ContextVar[dict[str, str] | None] = ContextVar("agrimarket_request_fields", default=None)


def bind_log_context(**values: str | int | uuid.UUID) -> None:
    """Add values to every log line for the rest of this request or job, e.g. ``organization_id=org.id``."""
    text = {key: str(value) for key, value in values.items()}
    structlog.contextvars.bind_contextvars(**text)
    fields = _request_fields.get()
    if fields is not None:
        fields.update(text)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


# ---------------------------------------------------------------------------------------------------------------
# Metrics

GaugeMode = Literal[
    "all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum", "mostrecent", "livemostrecent"
]
NAMESPACE = "agrimarket"


def counter(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
    """A counter named ``agrimarket_<name>_total``, registered for ``/metrics``."""
    return Counter(name, documentation, labelnames, namespace=NAMESPACE, registry=REGISTRY)


def histogram(
    name: str,
    documentation: str,
    labelnames: Sequence[str] = (),
    buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
) -> Histogram:
    """A histogram named ``agrimarket_<name>``, registered for ``/metrics``."""
    return Histogram(name, documentation, labelnames, namespace=NAMESPACE, registry=REGISTRY, buckets=buckets)


def gauge(name: str, documentation: str, labelnames: Sequence[str] = (), *, multiprocess_mode: GaugeMode) -> Gauge:
    """A gauge named ``agrimarket_<name>``, registered for ``/metrics``.

    ``multiprocess_mode`` says how ``/metrics`` combines the values of several server processes, so it is
    required: ``livesum`` for what each process holds (requests in flight), ``mostrecent`` for a fact every
    process reads from the database (queue depth, lag), ``max`` for a high-water mark. The ``live*`` modes drop a
    process's value when it exits. ``mostrecent`` gauges can only be ``set()``. Labels must come from a small,
    fixed set of values (a kind, a connection id), never from user input or raw paths.

    Example, for the job queue and the sync engine::

        from agrimarket.observability import gauge

        JOBS_WAITING = gauge("jobs_waiting", "Jobs ready to run.", ["kind"], multiprocess_mode="mostrecent")
        OLDEST_JOB_AGE = gauge(
            "jobs_oldest_age_seconds", "Age of the oldest waiting job.", ["kind"], multiprocess_mode="mostrecent"
        )
        SYNC_LAG = gauge(
            "sync_lag_seconds",
            "Age of the oldest change not yet pushed to the channel.",
            ["channel", "connection_id"],
            multiprocess_mode="mostrecent",
        )

        # wherever the scheduler samples the queue:
        JOBS_WAITING.labels(kind="sync_connection").set(depth)
        SYNC_LAG.labels(channel="shopee", connection_id=str(connection.id)).set(lag_seconds)

    Define metrics once, at module level: defining a name twice is an error.
    """
    return Gauge(
        name, documentation, labelnames, namespace=NAMESPACE, registry=REGISTRY, multiprocess_mode=multiprocess_mode
    )


REQUEST_DURATION = histogram(
    "http_request_duration_seconds",
    "Time from the request's arrival to the end of its response, by route template.",
    ["method", "route", "status"],
)
REQUESTS_IN_FLIGHT = gauge("http_requests_in_flight", "Requests being handled right now.", multiprocess_mode="livesum")


def multiprocess_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_DIR_ENV)
    return Path(value) if value else None


def prepare_multiprocess_dir(path: Path) -> Path:
    """Point every server process at one metrics folder, emptied first; returns the folder in use.

    Call it before the worker processes start: prometheus_client picks its storage when it is first imported in
    a process. A folder already given in the environment is the operator's and is used as it is.
    """
    if (given := multiprocess_dir()) is not None:
        return given
    # Values left by an earlier run would be added to this one's (and a reused pid would resume them).
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_DIR_ENV] = str(path)
    return path


def mark_process_dead(pid: int | None = None) -> None:
    """Drop a process's ``live*`` gauges (its requests in flight) from the shared folder when it stops."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(os.getpid() if pid is None else pid)  # type: ignore[no-untyped-call]


def render_metrics(accept: str | None) -> tuple[bytes, str]:
    """The exposition body and its content type; in multiprocess mode, every process's values added up."""
    registry: CollectorRegistry = REGISTRY
    if (path := multiprocess_dir()) is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


# ---------------------------------------------------------------------------------------------------------------
# The request middleware

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Probes and scrapes arrive every few seconds; their access lines are debug, so they do not drown the rest.
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
UNMATCHED_ROUTE = "<unmatched>"

_access_log = get_logger("agrimarket.access")


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            candidate: str = value.decode("latin-1")
            if _SANE_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def route_template(scope: Scope, root_path: str) -> str:
    """The matched route's path template (``/organizations/{organization_id}``), never the raw path."""
    # Mounted apps extend root_path; their routes' templates are relative to the mount.
    mount_prefix = str(scope.get("root_path", ""))[len(root_path) :]
    route = scope.get("route")
    path_format = getattr(route, "path_format", None)
    if isinstance(path_format, str) and not isinstance(route, Mount):
        return mount_prefix + path_format
    if mount_prefix:  # inside a mounted app that is not a router (static files), or that matched nothing
        return mount_prefix + "/{path}"
    return UNMATCHED_ROUTE


class ObservabilityMiddleware:
    """Per request: an id (the caller's ``X-Request-ID`` if sane, else a new one) bound to every log line and
    returned in the response header; one access log line; the latency histogram and the in-flight gauge.

    Pure ASGI, not ``BaseHTTPMiddleware``: no extra task per request, and streamed responses pass through as they
    are. Add it last, so it is the outermost middleware and its timing and request id cover the others.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        start = time.perf_counter()
        request_id = _request_id(scope)
        root_path = str(scope.get("root_path", ""))
        scope.setdefault("state", {})["request_id"] = request_id
        header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        status = 500

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        outer_log_context = structlog.contextvars.get_contextvars()
        fields = {"request_id": request_id}
        fields_token = _request_fields.set(fields)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        REQUESTS_IN_FLIGHT.inc()
        failed = True
        try:
            await self.app(scope, receive, send_with_request_id)
            failed = False
        finally:
            REQUESTS_IN_FLIGHT.dec()
            duration = time.perf_counter() - start
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            route = route_template(scope, root_path)
            REQUEST_DURATION.labels(method=method, route=route, status=f"{status // 100}xx").observe(duration)
            level = logging.ERROR if status >= 500 else logging.DEBUG if route in _QUIET_ROUTES else logging.INFO
            line = {
                **fields,
                "method": scope["method"],
                "path": scope["path"],
                "route": route,
                "status": status,
                "duration_ms": round(duration * 1000, 2),
            }
            _access_log.log(level, "request", **line)
            _request_fields.reset(fields_token)
            # After a failure the server logs the traceback next, in this same context: leave the request's
            # values bound so that line carries them too. Each request has its own task, so nothing leaks.
            if not failed:
                structlog.contextvars.clear_contextvars()
                structlog.contextvars.bind_contextvars(**outer_log_context)

    def _lifespan_send(self, send: Send) -> Send:
        async def lifespan_send(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                mark_process_dead()  # before the server hears "complete" and the process may end
            await send(message)

        return lifespan_send
