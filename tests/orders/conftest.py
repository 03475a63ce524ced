"""Order pipeline tests commit for real (the drain and the fulfilment endpoints open their own transactions)."""

from __future__ import annotations

from tests.worker.conftest import db, engine_b, make_worker, registry, worker_settings  # noqa: F401
