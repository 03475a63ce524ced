"""Alembic, driven from code: the CLI, the server's start-up and the tests share these functions."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from agrimarket.config import Settings


def alembic_config(settings: Settings, url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(settings.resolve_migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", (url or settings.database_url).replace("%", "%%"))
    return cfg


def upgrade(settings: Settings, revision: str = "head", url: str | None = None) -> None:
    command.upgrade(alembic_config(settings, url), revision)


def downgrade(settings: Settings, revision: str, url: str | None = None) -> None:
    command.downgrade(alembic_config(settings, url), revision)


def head_revision(settings: Settings) -> str | None:
    return ScriptDirectory.from_config(alembic_config(settings)).get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
