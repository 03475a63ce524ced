"""What an import pass does for speed changes nothing else: the same keys as the catalog's, the collector as it was."""

from __future__ import annotations

import gc
import uuid

import pytest

from agrimarket.imports.repository import IN_LIMIT, _by_organization
from agrimarket.imports.service import fewer_collections, fold
from agrimarket.kit.text import fold as catalog_fold


@pytest.mark.parametrize(
    "text",
    ["SR-RI6-1KG", "  Hop  1\tkg ", "A\x1cB", "MIXED case.Sku_1", "", "Sầu riêng Ri6", "ĐẮK LẮK", "Tiêu  đen\u00a0 "],
)
def test_an_import_folds_like_the_catalog(text: str) -> None:
    assert fold(text) == catalog_fold(text)


def test_the_collector_runs_less_while_imports_run_and_as_before_after() -> None:
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold()[0] >= 10_000
        with fewer_collections():  # a second import at the same time
            assert gc.get_threshold()[0] >= 10_000
        assert gc.get_threshold()[0] >= 10_000  # the first still runs
    assert gc.get_threshold() == before


@pytest.mark.parametrize("sizes", [[], [1], [IN_LIMIT], [IN_LIMIT, 1], [IN_LIMIT - 1, 2, IN_LIMIT * 2 + 3], [7] * 90])
def test_skus_are_looked_up_by_organization_in_lists_of_at_most_the_limit(sizes: list[int]) -> None:
    keys = [
        (organization, f"SKU-{i}") for organization, size in ((uuid.uuid4(), s) for s in sizes) for i in range(size)
    ]

    batches = list(_by_organization(keys + keys[:5]))  # a key asked for twice is looked up once

    assert sorted((o, s) for batch in batches for o, skus in batch for s in skus) == sorted(keys)
    assert all(0 < sum(len(skus) for _, skus in batch) <= IN_LIMIT for batch in batches)
    assert all(skus for batch in batches for _, skus in batch)
