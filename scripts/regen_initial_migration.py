"""Rewrite migrations/versions/0001_initial_schema.py from the models.

Only while 0001 has never been deployed (before the first release): afterwards every change is a new revision
made with `alembic revision --autogenerate`. Run: `.venv/bin/python scripts/regen_initial_migration.py`.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from alembic import command

from agrimarket.config import Settings
from agrimarket.migrate import alembic_config

VERSIONS = Path(__file__).resolve().parents[1] / "migrations" / "versions"


def main() -> None:
    for old in VERSIONS.glob("0001_*.py"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp}/empty.db", data_dir=Path(tmp))
        command.revision(alembic_config(settings), message="initial schema", autogenerate=True, rev_id="0001")
    (path,) = VERSIONS.glob("0001_*.py")
    text = path.read_text()
    # A stable file: no creation stamp, so regenerating an unchanged schema leaves git clean.
    text = "\n".join(line for line in text.splitlines() if not line.startswith("Create Date:")) + "\n"
    path.write_text(text)
    subprocess.run([Path(sys.executable).parent / "ruff", "format", "--quiet", str(path)], check=True)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
