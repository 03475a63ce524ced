"""openapi/openapi.json is what integrators read: it must be the document the app actually serves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agrimarket.cli import openapi_document

COMMITTED = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"
FIX = "run `make openapi` and commit openapi/openapi.json"


def _operations(document: str) -> set[str]:
    paths: dict[str, dict[str, object]] = json.loads(document).get("paths", {})
    return {f"{method.upper()} {path}" for path, operations in paths.items() for method in operations}


def test_committed_openapi_document_matches_the_app() -> None:
    if not COMMITTED.is_file():
        pytest.fail(f"openapi/openapi.json is missing: {FIX}")
    committed = COMMITTED.read_text(encoding="utf-8")
    current = openapi_document()
    if committed != current:
        added = sorted(_operations(current) - _operations(committed))
        removed = sorted(_operations(committed) - _operations(current))
        pytest.fail(
            f"openapi/openapi.json is stale: {FIX}.\n"
            f"Operations new in the app: {added or 'none'}; gone from the app: {removed or 'none'}"
            + ("" if added or removed else "; the difference is in schemas, descriptions or parameters.")
        )
