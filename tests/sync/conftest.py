"""Sync engine tests commit for real (the engine opens its own transactions, workers claim on their own
connections), and the reference market is reset between tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agrimarket.channels.reference import ReferenceMarket
from agrimarket.config import Settings
from tests.worker.conftest import db, engine_b, make_worker, registry, worker_settings  # noqa: F401


@pytest.fixture
def sync_settings(worker_settings: Settings) -> Settings:  # noqa: F811
    return worker_settings.model_copy(
        update={
            "sync_coalesce_seconds": 0.0,
            "sync_lease_seconds": 1.5,
            "sync_circuit_threshold": 3,
            "sync_circuit_cooldown_seconds": 0.5,
        }
    )


@pytest.fixture(autouse=True)
def market() -> Iterator[type[ReferenceMarket]]:
    ReferenceMarket.reset()
    yield ReferenceMarket
    ReferenceMarket.reset()
