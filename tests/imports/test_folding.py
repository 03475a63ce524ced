"""The import's quick ways to the catalog's own keys give the very same keys."""

from __future__ import annotations

import pytest

from agrimarket.imports.service import fold
from agrimarket.kit.text import fold as catalog_fold


@pytest.mark.parametrize(
    "text",
    ["SR-RI6-1KG", "  Hop  1\tkg ", "A\x1cB", "MIXED case.Sku_1", "", "Sầu riêng Ri6", "ĐẮK LẮK", "Tiêu  đen\u00a0 "],
)
def test_an_import_folds_like_the_catalog(text: str) -> None:
    assert fold(text) == catalog_fold(text)
