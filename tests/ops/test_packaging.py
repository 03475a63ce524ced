"""A non-editable install (the Docker image's ``pip install .``) ships every package: setuptools finds only
folders with an ``__init__.py``, so a folder without one would be silently left out of the image."""

from __future__ import annotations

from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "agrimarket"


def test_every_source_folder_is_a_package_so_the_image_ships_it() -> None:
    folders = {p.parent for p in SRC.rglob("*.py") if "__pycache__" not in p.parts}
    missing = sorted(str(f.relative_to(SRC)) for f in folders if not (f / "__init__.py").is_file())
    assert not missing, f"folders without __init__.py (left out of a wheel): {missing}"
