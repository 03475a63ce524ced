"""The Dockerfile cannot be built here, so its essentials are read from it: cheap, and it catches regressions."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for instruction, args in self.instructions if instruction == keyword]


def parse(text: str) -> list[Stage]:
    """Stages of (INSTRUCTION, arguments), with comments dropped and continued lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            base, _, name = args.partition(" AS ") if " AS " in args else args.partition(" as ")
            stages.append(Stage(base=base.strip(), name=name.strip() or None))
        elif stages:
            stages[-1].instructions.append((instruction, args.strip()))
    return stages


def command_text(args: str) -> str:
    """An exec-form (JSON) or shell-form command as one string."""
    return " ".join(json.loads(args)) if args.startswith("[") else args


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse((ROOT / "Dockerfile").read_text(encoding="utf-8"))


def test_the_image_is_built_in_stages_from_a_venv_with_pinned_dependencies(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    builder, runtime = stages[0], stages[-1]
    assert any("-c requirements/constraints.txt ." in run for run in builder.all("RUN"))
    assert any(f"--from={builder.name}" in copy and "/opt/venv" in copy for copy in runtime.all("COPY"))
    assert not any("pip install" in run for run in runtime.all("RUN"))  # nothing built in the runtime image


def test_the_server_runs_as_an_unprivileged_user(stages: list[Stage]) -> None:
    runtime = stages[-1]
    users = runtime.all("USER")
    assert users, "the runtime stage needs a USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    keywords = [instruction for instruction, _ in runtime.instructions]
    assert keywords.index("USER") < keywords.index("CMD")


def test_the_runtime_is_configured_for_production_with_its_migrations(stages: list[Stage]) -> None:
    runtime = stages[-1]
    env = " ".join(runtime.all("ENV"))
    assert "AGRIMARKET_ENV=production" in env
    assert "AGRIMARKET_DATA_DIR=/data" in env
    migrations_dir = re.search(r"AGRIMARKET_MIGRATIONS_DIR=(\S+)", env)
    assert migrations_dir is not None
    assert any(copy.split() == ["migrations", migrations_dir.group(1)] for copy in runtime.all("COPY"))
    assert "/data" in " ".join(runtime.all("VOLUME"))
    assert "8000" in runtime.all("EXPOSE")


def test_the_healthcheck_asks_healthz_without_curl(stages: list[Stage]) -> None:
    [healthcheck] = stages[-1].all("HEALTHCHECK")
    command = command_text(healthcheck.partition("CMD ")[2])
    assert "/healthz" in command
    assert "urllib" in command
    assert "curl" not in command


def test_the_schema_is_migrated_before_the_server_starts(stages: list[Stage]) -> None:
    [cmd] = stages[-1].all("CMD")
    command = command_text(cmd)
    upgrade, serve = command.find("agrimarket db upgrade"), command.find("agrimarket serve")
    assert 0 <= upgrade < serve
    # A failed migration must stop the start, and the server must become PID 1 to receive the stop signal.
    assert re.search(r"agrimarket db upgrade\s*&&\s*exec agrimarket serve", command)
    assert "--host 0.0.0.0" in command


def test_local_data_and_environments_stay_out_of_the_build_context() -> None:
    ignored = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")
    }
    assert {".git", ".venv", "data"} <= ignored
    assert "**/.env" in ignored
