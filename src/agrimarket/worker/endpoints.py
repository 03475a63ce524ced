"""Jobs API: see your organizations' background work, and retry what went dead."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from agrimarket.deps import PrincipalDep, SessionDep
from agrimarket.kit.pagination import Cursor, Page
from agrimarket.models import JobStatus
from agrimarket.worker.repository import JobRepository
from agrimarket.worker.schemas import JobOut
from agrimarket.worker.service import JobService

router = APIRouter(prefix="/api/v1", tags=["jobs"])
JOB_KIND_PATTERN = r"^[a-z0-9_.:-]+$"


def get_job_service(session: SessionDep) -> JobService:
    return JobService(JobRepository(session))


JobServiceDep = Annotated[JobService, Depends(get_job_service)]


@router.get("/jobs")
async def list_jobs(
    principal: PrincipalDep,
    jobs: JobServiceDep,
    status: JobStatus | None = None,
    kind: Annotated[
        str | None, Query(max_length=100, pattern=r"^[a-z0-9_.:-]+$", description="e.g. `sync.connection`")
    ] = None,
    organization_id: uuid.UUID | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[JobOut]:
    """Background jobs of the organizations you run as admin or owner, newest first (`status=dead`: stuck ones)."""
    after = Cursor.decode(cursor) if cursor else None
    found = await jobs.page(
        principal.access, organization_id=organization_id, status=status, kind=kind, after=after, limit=limit + 1
    )
    items = found[:limit]
    next_cursor = Cursor(items[-1].created_at, items[-1].id).encode() if len(found) > limit else None
    return Page[JobOut](items=[JobOut.model_validate(job) for job in items], next_cursor=next_cursor)


@router.get("/jobs/{job_id}")
async def get_job(job_id: uuid.UUID, principal: PrincipalDep, jobs: JobServiceDep) -> JobOut:
    """One background job, with its last error."""
    return JobOut.model_validate(await jobs.get(principal.access, job_id))


@router.post("/jobs/{job_id}/retry")
async def retry_job(job_id: uuid.UUID, principal: PrincipalDep, jobs: JobServiceDep) -> JobOut:
    """Put a dead job back in the queue with all its attempts ahead of it; a worker picks it up at once."""
    return JobOut.model_validate(await jobs.retry(principal.access, job_id))
