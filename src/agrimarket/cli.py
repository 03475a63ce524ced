"""The ``agrimarket`` command."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

from agrimarket.config import ConfigurationError, Settings, get_settings, new_fernet_key
from agrimarket.observability import configure_logging

DEFAULT_OPENAPI_PATH = Path("openapi/openapi.json")


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    settings.check_secrets()  # fail before forking workers, with the clear message
    # The app (made by uvicorn's factory, maybe in other processes) reads its settings from the environment: the
    # flags go there too, so the address it links to (OAuth callbacks, the demo's sandboxes) is where it listens.
    if args.host:
        os.environ["AGRIMARKET_HOST"] = args.host
    if args.port:
        os.environ["AGRIMARKET_PORT"] = str(args.port)
    get_settings.cache_clear()
    if args.workers > 1:
        from agrimarket.observability import prepare_multiprocess_dir

        # Set before the workers start: each is a fresh interpreter (uvicorn spawns them) whose prometheus_client
        # reads PROMETHEUS_MULTIPROC_DIR at import and writes its values there for /metrics to add up.
        prepare_multiprocess_dir(settings.data_dir / "prometheus-multiproc")
    uvicorn.run(
        "agrimarket.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers,
        proxy_headers=True,
        log_config=None,
    )
    return 0


def _db(args: argparse.Namespace, settings: Settings) -> int:
    from agrimarket import migrate

    if args.db_command == "upgrade":
        migrate.upgrade(settings, args.revision)
    elif args.db_command == "downgrade":
        migrate.downgrade(settings, args.revision)
    elif args.db_command == "revision":
        migrate.revision(settings, args.message)
    elif args.db_command == "head":
        print(migrate.head_revision(settings))
    return 0


def openapi_document() -> str:
    from agrimarket.app import create_app

    # Throwaway secrets: the document depends on the routes only, never on keys or the environment.
    settings = Settings(env="test", secret_key="openapi-only", encryption_keys=new_fernet_key())  # noqa: S106
    schema = create_app(settings).openapi()
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _openapi(args: argparse.Namespace, _settings: Settings) -> int:
    document = openapi_document()
    if args.output == "-":
        sys.stdout.write(document)
    else:
        path = Path(args.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(document, encoding="utf-8")
        print(f"wrote {path}")
    return 0


def _create_user(args: argparse.Namespace, settings: Settings) -> int:
    from agrimarket.accounts.repository import AccountRepository
    from agrimarket.accounts.service import AccountService
    from agrimarket.db import create_engine, make_sessionmaker, transaction
    from agrimarket.models import OrganizationKind

    password = args.password or getpass.getpass("Password (8 characters or more): ")

    async def run() -> str:
        engine = create_engine(settings)
        try:
            async with transaction(make_sessionmaker(engine)) as session:
                user, organization = await AccountService(AccountRepository(session)).register(
                    phone=args.phone,
                    password=password,
                    full_name=args.name,
                    organization_name=args.organization,
                    kind=OrganizationKind(args.kind),
                )
                return f"created {user.phone} as owner of {organization.name} ({organization.kind.value})"
        finally:
            await engine.dispose()

    if len(password) < 8:
        print("error: the password needs at least 8 characters", file=sys.stderr)
        return 2
    print(asyncio.run(run()))
    return 0


def _generate_keys(_args: argparse.Namespace, _settings: Settings) -> int:
    import secrets

    print(f"AGRIMARKET_SECRET_KEY={secrets.token_urlsafe(48)}")
    print(f"AGRIMARKET_ENCRYPTION_KEYS={new_fernet_key()}")
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from agrimarket.worker.commands import run_worker

    settings.check_secrets()
    # The event loop the server runs on (uvicorn picks uvloop where it is installed, as uvicorn[standard] does).
    with asyncio.Runner(loop_factory=_fast_loop()) as runner:
        runner.run(run_worker(settings, concurrency=args.concurrency, worker_id=args.id))
    return 0


def _fast_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - installed with uvicorn[standard] wherever it builds
        return None
    return uvloop.new_event_loop


def _jobs(args: argparse.Namespace, settings: Settings) -> int:
    from agrimarket.errors import AgriMarketError
    from agrimarket.models import JobStatus
    from agrimarket.worker.commands import list_jobs, retry_job

    if args.jobs_command == "list":
        status = JobStatus(args.status) if args.status else None
        jobs = asyncio.run(list_jobs(settings, status=status, kind=args.kind, limit=args.limit))
        for job in jobs:
            error = (job.last_error or "").replace("\n", " ")[:80]
            print(
                f"{job.id}  {job.status.value:<7}  {job.kind:<28}  {job.attempts}/{job.max_attempts}  "
                f"{job.run_at:%Y-%m-%d %H:%M:%S}  {error}"
            )
        if not jobs:
            print("no jobs")
        return 0
    try:
        job = asyncio.run(retry_job(settings, args.job_id))
    except AgriMarketError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(f"job {job.id} ({job.kind}) is queued again")
    return 0


def _inbox(args: argparse.Namespace, settings: Settings) -> int:
    from agrimarket.errors import AgriMarketError
    from agrimarket.webhooks.commands import list_events, replay_event
    from agrimarket.webhooks.service import status_of

    if args.inbox_command == "list":
        rows = asyncio.run(list_events(settings, pending=args.unhandled, limit=args.limit))
        for row in rows:
            event = row.event
            error = (event.last_error or "").replace("\n", " ")[:60]
            print(
                f"{event.id}  {status_of(row).value:<9}  {row.channel:<8}  {event.event_type:<7}  "
                f"{event.received_at:%Y-%m-%d %H:%M:%S}  {event.attempts}  {event.external_id[:48]}  {error}"
            )
        if not rows:
            print("no events")
        return 0
    try:
        row = asyncio.run(replay_event(settings, args.event_id))
    except AgriMarketError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(f"event {row.event.id} ({row.channel} {row.event.external_id}) is handed to the order pipeline again")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agrimarket", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server (and, by default, the worker inside it)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1, help="server processes")
    serve.set_defaults(handler=_serve)

    db = commands.add_parser("db", help="database schema (Alembic)")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    up = db_commands.add_parser("upgrade", help="migrate to the latest schema")
    up.add_argument("revision", nargs="?", default="head")
    down = db_commands.add_parser("downgrade", help="migrate down to a revision ('base' for empty)")
    down.add_argument("revision")
    rev = db_commands.add_parser(
        "revision", help="write a new migration from the models' difference with the (migrated) configured database"
    )
    rev.add_argument("--message", "-m", required=True)
    db_commands.add_parser("head", help="print the latest migration's revision")
    db.set_defaults(handler=_db)

    openapi = commands.add_parser("openapi", help="write the OpenAPI document")
    openapi.add_argument("--output", "-o", default=str(DEFAULT_OPENAPI_PATH), help="a path, or - for stdout")
    openapi.set_defaults(handler=_openapi)

    create_user = commands.add_parser("create-user", help="create a user and the organization they own")
    create_user.add_argument("--phone", required=True)
    create_user.add_argument("--name", required=True)
    create_user.add_argument("--organization", required=True)
    create_user.add_argument("--kind", choices=["household", "cooperative"], default="household")
    create_user.add_argument("--password", help="omit to be asked without echo")
    create_user.set_defaults(handler=_create_user)

    keys = commands.add_parser("generate-keys", help="print fresh production secrets")
    keys.set_defaults(handler=_generate_keys)

    worker = commands.add_parser("worker", help="run a background job worker (several may run on PostgreSQL)")
    worker.add_argument("--concurrency", type=int, help="jobs run at once (default: AGRIMARKET_WORKER_CONCURRENCY)")
    worker.add_argument("--id", help="the worker's name in job locks (default: host:pid:random)")
    worker.set_defaults(handler=_worker)

    jobs = commands.add_parser("jobs", help="look at background jobs; retry dead ones")
    jobs_commands = jobs.add_subparsers(dest="jobs_command", required=True)
    jobs_list = jobs_commands.add_parser("list", help="newest jobs first")
    jobs_list.add_argument("--status", choices=["queued", "running", "done", "dead"])
    jobs_list.add_argument("--kind")
    jobs_list.add_argument("--limit", type=int, default=50)
    jobs_retry = jobs_commands.add_parser("retry", help="put a dead job back in the queue, attempts reset")
    jobs_retry.add_argument("job_id", type=uuid.UUID, metavar="ID")
    jobs.set_defaults(handler=_jobs)

    inbox = commands.add_parser("inbox", help="look at received marketplace pushes; hand one to the orders again")
    inbox_commands = inbox.add_subparsers(dest="inbox_command", required=True)
    inbox_list = inbox_commands.add_parser("list", help="newest pushes first")
    inbox_list.add_argument("--unhandled", action="store_true", help="only those not handled yet (waiting or failed)")
    inbox_list.add_argument("--limit", type=int, default=50)
    inbox_replay = inbox_commands.add_parser("replay", help="mark a push unhandled and queue its shop's inbox drain")
    inbox_replay.add_argument("event_id", type=uuid.UUID, metavar="EVENT_ID")
    inbox.set_defaults(handler=_inbox)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
        # One log format for every command (alembic's "Running upgrade…" lines included), not just the server.
        configure_logging(json_logs=settings.json_logs, level=settings.log_level)
        result: int = args.handler(args, settings)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    raise SystemExit(main())
