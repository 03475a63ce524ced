"""Jobs as people see them: list the queue, and put a dead job back in it. Never commits."""

from __future__ import annotations

import uuid

from agrimarket.accounts.permissions import Access, outranks_or_equals
from agrimarket.errors import Conflict, NotFound
from agrimarket.kit.pagination import Cursor
from agrimarket.models import Job, JobStatus, Role, utcnow
from agrimarket.worker.queue import announce
from agrimarket.worker.repository import JobRepository


def _admin_organizations(access: Access) -> list[uuid.UUID]:
    return [org_id for org_id, role in access.roles.items() if outranks_or_equals(role, Role.admin)]


class JobService:
    def __init__(self, repository: JobRepository) -> None:
        self.repo = repository

    async def page(
        self,
        access: Access | None,
        *,
        organization_id: uuid.UUID | None = None,
        status: JobStatus | None = None,
        kind: str | None = None,
        after: Cursor | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """With ``access``: jobs of the organizations the caller runs (admin or owner). Without: every job
        (operators, from the command line)."""
        organization_ids: list[uuid.UUID] | None
        if access is None:
            organization_ids = [organization_id] if organization_id is not None else None
        elif organization_id is not None:
            access.require(organization_id, Role.admin)
            organization_ids = [organization_id]
        else:
            organization_ids = _admin_organizations(access)
        return await self.repo.page(
            organization_ids=organization_ids, status=status, kind=kind, after=after, limit=limit
        )

    async def get(self, access: Access | None, job_id: uuid.UUID) -> Job:
        job = await self.repo.get(job_id)
        if job is None:
            raise NotFound("Job not found.")
        if access is not None:
            if job.organization_id is None:  # the system's own jobs: operators only
                raise NotFound("Job not found.")
            access.require(job.organization_id, Role.admin)
        return job

    async def retry(self, access: Access | None, job_id: uuid.UUID) -> Job:
        """A dead job back in the queue, due now, attempts reset. Workers wake when the transaction commits."""
        job = await self.get(access, job_id)
        if job.status is not JobStatus.dead:
            raise Conflict(f"Only a dead job can be retried; this one is {job.status.value}.")
        if not await self.repo.requeue_dead(job.id, utcnow()):
            raise Conflict("This job changed a moment ago; reload it and try again.")
        await announce(self.repo.session)
        await self.repo.session.refresh(job)
        return job
