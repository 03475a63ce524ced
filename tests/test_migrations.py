"""Alembic migrations: one head, a clean round trip from empty and back, and no drift from the models.

Each test migrates its own throwaway database (a SQLite file, or a fresh PostgreSQL database beside the one in
AGRIMARKET_TEST_DATABASE_URL), so the shared migrated database the other tests use is never touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from agrimarket import migrate
from agrimarket.config import Settings
from agrimarket.models import Base
from tests.conftest import throwaway_database


@pytest.fixture
def scratch_url(tmp_path: Path) -> Iterator[str]:
    """An empty database of the kind under test, dropped afterwards."""
    with throwaway_database(tmp_path, "scratch.db") as url:
        yield url


@pytest.fixture
def scratch(scratch_url: str) -> Iterator[sa.Engine]:
    """A synchronous engine on the scratch database, for inspecting it between migrations."""
    url = sa.make_url(scratch_url)
    sync_driver = "sqlite" if url.get_backend_name() == "sqlite" else "postgresql+psycopg"
    engine = sa.create_engine(url.set(drivername=sync_driver), poolclass=sa.NullPool)
    yield engine
    engine.dispose()


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def _enum_types(engine: sa.Engine) -> set[str]:
    if engine.dialect.name != "postgresql":
        return set()
    query = "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.typtype = 'e'"
    with engine.connect() as connection:
        return set(connection.execute(sa.text(query + " AND n.nspname = current_schema()")).scalars())


def _current(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        return migrate.current_revision(connection)


def test_there_is_exactly_one_head(settings: Settings) -> None:
    heads = ScriptDirectory.from_config(migrate.alembic_config(settings)).get_heads()
    assert len(heads) == 1, f"several heads {heads}: merge them with `alembic merge`"


def test_upgrade_from_empty_downgrade_to_base_and_upgrade_again(
    settings: Settings, scratch_url: str, scratch: sa.Engine
) -> None:
    head = migrate.head_revision(settings)
    model_tables = set(Base.metadata.tables)

    migrate.upgrade(settings, url=scratch_url)
    assert _current(scratch) == head
    assert _tables(scratch) == model_tables | {"alembic_version"}

    migrate.downgrade(settings, "base", url=scratch_url)
    assert _tables(scratch) <= {"alembic_version"}
    assert _enum_types(scratch) == set()
    assert _current(scratch) is None

    migrate.upgrade(settings, url=scratch_url)
    assert _current(scratch) == head
    assert _tables(scratch) == model_tables | {"alembic_version"}


def test_every_migration_downgrades_and_upgrades_again(
    settings: Settings, scratch_url: str, scratch: sa.Engine
) -> None:
    """The "stairway": each step up, then down, then up again, so every downgrade undoes exactly its upgrade."""
    script = ScriptDirectory.from_config(migrate.alembic_config(settings))
    for revision in reversed(list(script.walk_revisions())):
        migrate.upgrade(settings, revision.revision, url=scratch_url)
        migrate.downgrade(settings, "-1", url=scratch_url)
        assert _current(scratch) == revision.down_revision
        migrate.upgrade(settings, revision.revision, url=scratch_url)
        assert _current(scratch) == revision.revision


def test_models_and_migrations_do_not_drift(settings: Settings, scratch_url: str, scratch: sa.Engine) -> None:
    migrate.upgrade(settings, url=scratch_url)
    with scratch.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
        differences = compare_metadata(context, Base.metadata)
    drift = "\n".join(map(str, differences))
    assert not differences, f"the models differ from the migrations; add a migration for:\n{drift}"
