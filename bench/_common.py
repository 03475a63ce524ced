"""What the benchmarks share: a throwaway database and the settings for it, and the process's memory figures."""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import make_url

from agrimarket.config import Environment, Settings, new_fernet_key


@contextmanager
def throwaway_database(directory: Path, given: str | None) -> Iterator[str]:
    """SQLite in ``directory``, or a new PostgreSQL database beside ``given`` (dropped afterwards)."""
    if not given:
        yield f"sqlite+aiosqlite:///{directory / 'bench.db'}"
        return
    import psycopg

    url = make_url(given)
    name = f"agrimarket_bench_{uuid.uuid4().hex[:10]}"
    admin_dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # name is ours: hex only
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_settings(directory: Path, database_url: str) -> Settings:
    """Test settings on ``database_url`` with their data in ``directory``: fresh keys, no auto-migration, quiet logs."""
    return Settings(
        env=Environment.test,
        data_dir=directory / "data",
        database_url=database_url,
        secret_key=secrets.token_urlsafe(32),
        encryption_keys=new_fernet_key(),
        auto_migrate=False,
        log_level="WARNING",
    )


def status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` figure in KiB (``VmRSS``, ``VmHWM``…); None where there is none (not Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> None:
    """Start the resident peak (``VmHWM``) again from the present (Linux; elsewhere nothing)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
