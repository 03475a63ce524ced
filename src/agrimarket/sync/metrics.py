"""Prometheus metrics of the sync engine, on the default registry (served by ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RUNS = Counter(
    "agrimarket_sync_runs_total",
    "Sync runs over one shop, per channel and outcome (done, busy, rate_limited, failed, circuit_open, …).",
    ["channel", "outcome"],
)
CALLS = Counter(
    "agrimarket_channel_calls_total",
    "Calls to marketplaces, per channel, operation and outcome (ok, or the error's kind).",
    ["channel", "op", "outcome"],
)
CALL_SECONDS = Histogram(
    "agrimarket_channel_call_seconds",
    "Time one marketplace call took, per channel and operation.",
    ["channel", "op"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20),
)
