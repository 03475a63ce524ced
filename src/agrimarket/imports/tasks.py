"""An import's background work: the preview and the apply of a file too large to handle while the request waits.

Both are safe to run again. A preview starts by forgetting the errors an earlier run wrote; an apply writes in one
transaction that also moves the import to ``applied``, so a retry finds either nothing done or everything done.
A run that fails for good leaves the import ``failed`` with the reason, never stuck in ``validating``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.config import Settings
from agrimarket.db import bound_engine, read_sessionmaker, transaction
from agrimarket.imports.checked import CheckedWriter, open_checked, signing_key
from agrimarket.imports.files import fetched, fetched_if_stored, staged
from agrimarket.imports.progress import Progress
from agrimarket.imports.repository import ImportRepository
from agrimarket.imports.service import ImportService, Mode, error_row
from agrimarket.imports.validation import RowError
from agrimarket.media.storage import Storage, storage_for
from agrimarket.models import ImportJob, ImportStatus, utcnow
from agrimarket.observability import get_logger
from agrimarket.worker import JobContext, handler

log = get_logger(__name__)

PREVIEW_KIND = "imports.preview"
APPLY_KIND = "imports.apply"
MAX_ATTEMPTS = 3
_OUTCOME = (
    "status",
    "total_rows",
    "processed_rows",
    "created_count",
    "updated_count",
    "unchanged_count",
    "error_rows",
    "error_count",
    "missing_count",
    "zeroed_count",
    "detected",
    "message",
    "finished_at",
)


def import_storage(settings: Settings) -> Storage:
    return storage_for(
        settings.media_storage_url, settings.data_dir, public_base_url=settings.media_public_base_url or None
    )


def scratch_dir(settings: Settings) -> Any:
    return settings.data_dir / "tmp" / "imports"


def checked_key(job: ImportJob) -> str:
    """Where the preview keeps the rows it checked, beside the upload."""
    return f"{job.storage_key}.checked"


def _signing_key(settings: Settings) -> bytes:
    assert settings.secret_key is not None
    return signing_key(settings.secret_key.get_secret_value())


async def _forget_checked(storage: Storage, job: ImportJob) -> None:
    """An applied import is not applied again: its kept rows go (left behind if the storage fails now)."""
    try:
        await storage.delete(checked_key(job))
    except Exception:
        log.warning("import_checked_rows_not_deleted", import_id=str(job.id), exc_info=True)


class CommittingSink:
    """Errors written in short transactions of their own, a batch at a time (a preview in the worker)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], import_id: uuid.UUID) -> None:
        self.sessionmaker = sessionmaker
        self.import_id = import_id
        self.pending: list[dict[str, Any]] = []

    async def add(self, errors: Sequence[RowError]) -> None:
        self.pending.extend(error_row(self.import_id, e) for e in errors)
        if len(self.pending) >= 1000:
            await self.close()

    async def close(self) -> None:
        pending, self.pending = self.pending, []
        if pending:
            async with transaction(self.sessionmaker) as session:
                await ImportRepository(session).insert_errors(pending)

    async def reset(self) -> None:
        self.pending.clear()
        async with transaction(self.sessionmaker) as session:
            await ImportRepository(session).delete_errors(self.import_id)


async def _job_in(ctx: JobContext, import_id: uuid.UUID, status: ImportStatus) -> ImportJob | None:
    async with ctx.transaction() as session:
        job = await ImportRepository(session).job(import_id)
    if job is None or job.status is not status:
        return None  # done by an earlier run, or cancelled
    return job


async def _give_up(ctx: JobContext, import_id: uuid.UUID, status: ImportStatus, exc: BaseException) -> None:
    async with ctx.transaction() as session:
        await ImportRepository(session).move_status(
            import_id,
            status,
            ImportStatus.failed,
            message=f"The import stopped on an unexpected error ({type(exc).__name__}). Upload the file again; "
            "if it fails again, send it to support.",
            finished_at=utcnow(),
        )


@handler(PREVIEW_KIND)
async def preview_import(ctx: JobContext, payload: dict[str, Any]) -> None:
    import_id = uuid.UUID(payload["import_id"])
    job = await _job_in(ctx, import_id, ImportStatus.validating)
    if job is None:
        return
    sink = CommittingSink(ctx.sessionmaker, import_id)
    progress = Progress(import_id, ctx.sessionmaker)
    storage = import_storage(ctx.settings)
    try:
        await sink.reset()
        # A reading transaction (deferred on SQLite), so the errors and progress written meanwhile never wait.
        async with (
            fetched(storage, job.storage_key, scratch_dir(ctx.settings)) as path,
            staged(storage, checked_key(job), scratch_dir(ctx.settings)) as kept,
            transaction(read_sessionmaker(ctx.sessionmaker)) as read_session,
        ):
            service = ImportService(ImportRepository(read_session))
            writer = CheckedWriter(kept.path, job.id, job.content_hash, _signing_key(ctx.settings))
            try:
                await service.preview(job, path, sink=sink, progress=progress, keep=writer)
            finally:
                writer.close()
            if writer.complete:
                await kept.keep()
        async with ctx.transaction() as session:
            fresh = await ImportRepository(session).job(import_id, lock=True)
            if fresh is not None and fresh.status is ImportStatus.validating:
                for name in _OUTCOME:
                    setattr(fresh, name, getattr(job, name))
    except Exception as exc:
        if ctx.is_last_attempt:
            await _give_up(ctx, import_id, ImportStatus.validating, exc)
        raise
    finally:
        progress.done()
    log.info("import_previewed", import_id=str(import_id), rows=job.total_rows, errors=job.error_count)


@handler(APPLY_KIND)
async def apply_import(ctx: JobContext, payload: dict[str, Any]) -> None:
    import_id = uuid.UUID(payload["import_id"])
    job = await _job_in(ctx, import_id, ImportStatus.applying)
    if job is None:
        return
    # SQLite: the apply holds the only write lock until it commits, so progress is kept in memory meanwhile.
    on_sqlite = bound_engine(ctx.sessionmaker).dialect.name == "sqlite"
    progress = Progress(import_id, None if on_sqlite else ctx.sessionmaker)
    storage = import_storage(ctx.settings)
    try:
        async with (
            fetched(storage, job.storage_key, scratch_dir(ctx.settings)) as path,
            fetched_if_stored(storage, checked_key(job), scratch_dir(ctx.settings)) as kept_path,
            ctx.transaction() as session,
        ):
            repo = ImportRepository(session)
            current = await repo.job(import_id)
            if current is None or current.status is not ImportStatus.applying:
                return
            kept = None
            if kept_path is not None:
                key = _signing_key(ctx.settings)
                kept = await asyncio.to_thread(open_checked, kept_path, current.id, current.content_hash, key)
            if kept is None:
                log.info("import_rows_checked_again", import_id=str(import_id), kept=kept_path is not None)
            await ImportService(repo).apply(
                current,
                path,
                mode=Mode(current.options.get("mode", Mode.all_or_nothing)),
                zero_missing=bool(current.options.get("zero_missing", False)),
                progress=progress,
                kept=kept,
            )
            status: ImportStatus = current.status
            log.info("import_applied", import_id=str(import_id), status=status.value)
        if status is ImportStatus.applied:
            await _forget_checked(storage, job)
    except Exception as exc:
        if ctx.is_last_attempt:
            await _give_up(ctx, import_id, ImportStatus.applying, exc)
        raise
    finally:
        progress.done()
