"""Prometheus metrics for the job queue, on the default registry (served by ``/metrics``)."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from prometheus_client import Counter, Gauge, Histogram

from agrimarket.worker.repository import KindStats

# Snapshots of the jobs table: every process holding a worker publishes the same facts, so with several server
# processes (prometheus_client's multiprocess mode) the most recent value of a live process is the answer.
_SNAPSHOT: Final = "livemostrecent"
QUEUE_DEPTH = Gauge(
    "agrimarket_job_queue_depth", "Queued jobs that are due now, per kind.", ["kind"], multiprocess_mode=_SNAPSHOT
)
OLDEST_QUEUED_AGE = Gauge(
    "agrimarket_job_oldest_queued_age_seconds",
    "How long the oldest due job of each kind has waited past its run_at.",
    ["kind"],
    multiprocess_mode=_SNAPSHOT,
)
RUNNING = Gauge(
    "agrimarket_jobs_running", "Jobs running now (in any worker), per kind.", ["kind"], multiprocess_mode=_SNAPSHOT
)
DEAD = Gauge(
    "agrimarket_jobs_dead",
    "Jobs that exhausted their attempts and wait for a person, per kind.",
    ["kind"],
    multiprocess_mode=_SNAPSHOT,
)
PROCESSED = Counter(
    "agrimarket_jobs_processed_total",
    "Job runs finished by this process, per kind and outcome (done, retry, dead, released, lost).",
    ["kind", "outcome"],
)
DURATION = Histogram(
    "agrimarket_job_duration_seconds",
    "Handler run time, per kind.",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
START_DELAY = Histogram(
    "agrimarket_job_start_delay_seconds",
    "From a job falling due (run_at) to its handler starting, per kind.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

_seen_kinds: set[str] = set()


def publish_stats(stats: list[KindStats], now: datetime) -> None:
    """Set the gauges from one snapshot; kinds that vanished from the snapshot drop to zero."""
    current = {s.kind for s in stats}
    for kind in _seen_kinds - current:
        for gauge in (QUEUE_DEPTH, OLDEST_QUEUED_AGE, RUNNING, DEAD):
            gauge.labels(kind=kind).set(0)
    for s in stats:
        QUEUE_DEPTH.labels(kind=s.kind).set(s.queued_due)
        age = (now - s.oldest_due_at).total_seconds() if s.oldest_due_at is not None else 0.0
        OLDEST_QUEUED_AGE.labels(kind=s.kind).set(max(age, 0.0))
        RUNNING.labels(kind=s.kind).set(s.running)
        DEAD.labels(kind=s.kind).set(s.dead)
    _seen_kinds.update(current)
