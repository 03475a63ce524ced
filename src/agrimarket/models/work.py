"""Durable background work: the webhook inbox and the job queue."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint, true
from sqlalchemy.orm import Mapped, mapped_column

from agrimarket.models.base import Base, IdMixin, str_enum, utcnow


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    dead = "dead"


class InboundEvent(IdMixin, Base):
    """A verified webhook exactly as received. Unique per (source, external id): a duplicate is a no-op."""

    __tablename__ = "inbound_events"

    source: Mapped[str] = mapped_column(String(60))
    external_id: Mapped[str] = mapped_column(String(200))
    connection_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("channel_connections.id", ondelete="SET NULL"), index=True
    )
    event_type: Mapped[str] = mapped_column(String(100))
    # The order numbers the push names, read when its signature verified (the signature itself is not kept, so
    # the body cannot be verified again): what the order pipeline re-fetches. None: not read at receipt.
    order_ids: Mapped[list[str] | None] = mapped_column(JSON)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    handled_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        # The inbox of one shop, oldest first: what ``orders.drain_inbox`` reads in batches.
        Index("ix_inbound_events_inbox", "connection_id", "handled_at", "received_at"),
    )


class Job(IdMixin, Base):
    __tablename__ = "jobs"

    kind: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[JobStatus] = mapped_column(str_enum(JobStatus, "job_status"), default=JobStatus.queued)
    organization_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    # At most one queued or running job per key (e.g. "sync:<connection>"); enqueueing it again is a no-op.
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    # False: the key is let go when the job starts, so a change made while it runs enqueues the next run
    # (the sync engine: a run reads the latest state, so only a queued job can fold later changes in).
    dedupe_while_running: Mapped[bool] = mapped_column(default=True, server_default=true())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=10)
    run_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_by: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_jobs_claim", "status", "run_at"),)
