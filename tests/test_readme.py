"""README promises: two Quick start commands, and a configuration table that names every setting."""

from __future__ import annotations

import re
from pathlib import Path

from agrimarket.config import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    missing = [name for name in Settings.model_fields if f"`AGRIMARKET_{name.upper()}`" not in README]
    assert not missing, f"README's configuration table lacks: {', '.join(missing)}"


def test_quick_start_has_exactly_the_two_commands_run_and_test() -> None:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    first_block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert first_block is not None
    commands = [line.split("#", 1)[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["make run", "make test"]


def test_makefile_targets_named_in_the_readme_exist() -> None:
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z-]+):", makefile, re.M))
    named = set(re.findall(r"`make ([a-z-]+)`", README))
    assert named <= targets, f"README names make targets that do not exist: {sorted(named - targets)}"
