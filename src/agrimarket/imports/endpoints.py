"""Bulk import API: upload a CSV or XLSX file, read its preview, apply it, download the error report.

A file up to ``import_inline_max_kb`` is checked (and later applied) while the request waits: the upload answers
201 with the preview. A larger one goes to the worker: the upload answers 202 with ``status: validating``; poll
``GET /imports/{id}`` for ``progress`` until the status is ``previewed`` (or ``failed``). Applying works the same
way: 200 with ``status: applied`` (or back to ``previewed`` with the reasons), or 202 with ``status: applying``.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile, status
from fastapi.responses import StreamingResponse

from agrimarket.config import Settings
from agrimarket.deps import PrincipalDep, SessionDep, SettingsDep
from agrimarket.errors import Invalid
from agrimarket.imports import progress as live_progress
from agrimarket.imports import schemas
from agrimarket.imports.columns import COLUMNS
from agrimarket.imports.files import fetched, spool, store
from agrimarket.imports.parsing import FileProblem, sniff_format
from agrimarket.imports.report import DELIMITERS, ReportWriter
from agrimarket.imports.repository import ImportRepository
from agrimarket.imports.service import ImportService, SessionSink, check_can_apply
from agrimarket.imports.tasks import APPLY_KIND, MAX_ATTEMPTS, PREVIEW_KIND, import_storage, scratch_dir
from agrimarket.imports.template import template_csv, template_xlsx
from agrimarket.kit.pagination import Cursor, Page
from agrimarket.models import ImportJob, ImportRowError, ImportStatus
from agrimarket.worker import enqueue

router = APIRouter(prefix="/api/v1", tags=["imports"])

FIRST_ERRORS = 20
UPLOAD_OVERHEAD = 64 * 1024
_XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def upload_body_limit(settings: Settings) -> int:
    return settings.import_max_upload_mb * 1024 * 1024 + UPLOAD_OVERHEAD


def get_import_service(session: SessionDep) -> ImportService:
    return ImportService(ImportRepository(session))


ImportServiceDep = Annotated[ImportService, Depends(get_import_service)]


def _inline(settings: Settings, size: int) -> bool:
    return size <= settings.import_inline_max_kb * 1024


async def import_out(imports: ImportService, job: ImportJob) -> schemas.ImportOut:
    errors = await imports.repo.errors(job.id, None, FIRST_ERRORS)
    earlier = await imports.earlier_upload(job)
    return schemas.ImportOut(
        id=job.id,
        organization_id=job.organization_id,
        filename=job.filename,
        file_format=job.file_format,
        status=job.status,
        options=job.options,
        progress=_progress(job),
        total_rows=job.total_rows,
        created_count=job.created_count,
        updated_count=job.updated_count,
        unchanged_count=job.unchanged_count,
        error_rows=job.error_rows,
        error_count=job.error_count,
        missing_count=job.missing_count,
        zeroed_count=job.zeroed_count,
        detected=job.detected,
        message=job.message,
        earlier_upload=schemas.EarlierUploadOut(id=earlier.id, applied_at=earlier.applied_at) if earlier else None,
        errors=[schemas.RowErrorOut.model_validate(e) for e in errors],
        errors_url=f"/api/v1/imports/{job.id}/errors",
        error_report_url=f"/api/v1/imports/{job.id}/errors.csv",
        created_at=job.created_at,
        applied_at=job.applied_at,
        finished_at=job.finished_at,
    )


def _progress(job: ImportJob) -> schemas.ProgressOut:
    if job.status not in (ImportStatus.validating, ImportStatus.applying):
        done = max(job.total_rows, job.processed_rows)
        return schemas.ProgressOut(phase="done", processed=done, total=done, percent=100)
    processed, total = job.processed_rows, job.total_rows
    live = live_progress.live(job.id)  # an apply on SQLite, in this process
    if live is not None and live.processed >= processed:
        processed, total = live.processed, live.total
    phase: Literal["waiting", "validating", "applying", "done"]
    if processed == 0 and live is None:
        phase = "waiting"
    else:
        phase = "validating" if job.status is ImportStatus.validating else "applying"
    percent = min(99, processed * 100 // total) if total else 0
    return schemas.ProgressOut(phase=phase, processed=processed, total=max(total, processed), percent=percent)


# -- the templates and the columns ------------------------------------------------------------------------------


@router.get("/imports/template.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
async def download_csv_template(_principal: PrincipalDep) -> Response:
    """The import template as CSV (UTF-8, comma): the columns and two example rows."""
    return Response(
        template_csv(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="agrimarket-mau-nhap-san-pham.csv"'},
    )


@router.get("/imports/template.xlsx", response_class=Response, responses={200: {"content": {_XLSX_TYPE: {}}}})
async def download_xlsx_template(_principal: PrincipalDep) -> Response:
    """The import template as an Excel workbook, with a sheet that explains each column."""
    return Response(
        template_xlsx(),
        media_type=_XLSX_TYPE,
        headers={"Content-Disposition": 'attachment; filename="agrimarket-mau-nhap-san-pham.xlsx"'},
    )


@router.get("/imports/columns")
async def import_columns(_principal: PrincipalDep) -> list[schemas.ColumnOut]:
    """The columns an import reads: header, whether required, the other headers accepted, how to fill them in."""
    return [
        schemas.ColumnOut(
            field=c.field,
            header=c.header,
            english=c.english,
            required=c.required,
            aliases=list(c.aliases),
            help_vi=c.help_vi,
            help_en=c.help_en,
            example=c.example,
        )
        for c in COLUMNS
    ]


# -- upload, status, errors -------------------------------------------------------------------------------------


@router.post(
    "/organizations/{organization_id}/imports",
    status_code=status.HTTP_201_CREATED,
    responses={
        202: {"model": schemas.ImportOut, "description": "A large file: checked in the background."},
        413: {"description": "The file is larger than the upload limit."},
    },
)
async def upload_import(
    organization_id: uuid.UUID,
    file: Annotated[UploadFile, File(description="CSV (UTF-8, UTF-16 or Windows-1258; , ; or tab) or XLSX.")],
    principal: PrincipalDep,
    imports: ImportServiceDep,
    settings: SettingsDep,
    response: Response,
) -> schemas.ImportOut:
    """Upload a product file for the organization (a cooperative's rows name its member households)."""
    await imports.organization_for_import(principal.access, organization_id)
    spooled = await spool(file.read, scratch_dir(settings), settings.import_max_upload_mb * 1024 * 1024)
    try:
        if spooled.size == 0:
            raise Invalid("The file is empty.", field="file")
        try:
            file_format = sniff_format(spooled.head)
        except FileProblem as problem:
            raise Invalid(problem.message, field="file") from None
        job_id = uuid.uuid4()
        key = f"imports/{organization_id.hex[:2]}/{organization_id.hex}/{job_id.hex}.{file_format}"
        job = ImportJob(
            id=job_id,
            organization_id=organization_id,
            user_id=principal.user.id,
            filename=(file.filename or f"import.{file_format}")[-255:],
            file_format=file_format,
            storage_key=key,
            content_hash=spooled.sha256,
            status=ImportStatus.validating,
            options={},
            detected={"bytes": spooled.size},
        )
        await store(import_storage(settings), key, spooled.path)
        imports.repo.add(job)
        await imports.repo.flush()
        if _inline(settings, spooled.size):
            await imports.preview(job, spooled.path, sink=SessionSink(imports.repo, job.id))
        else:
            await enqueue(
                imports.repo.session,
                PREVIEW_KIND,
                {"import_id": str(job.id)},
                dedupe_key=f"import:{job.id}",
                organization_id=organization_id,
                max_attempts=MAX_ATTEMPTS,
            )
            response.status_code = status.HTTP_202_ACCEPTED
        await imports.repo.flush()
    finally:
        spooled.path.unlink(missing_ok=True)
    return await import_out(imports, job)


@router.get("/organizations/{organization_id}/imports")
async def list_imports(
    organization_id: uuid.UUID,
    principal: PrincipalDep,
    imports: ImportServiceDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Page[schemas.ImportOut]:
    """The organization's imports, newest first."""
    jobs, next_cursor = await imports.page(
        principal.access, organization_id, Cursor.decode(cursor) if cursor else None, limit
    )
    return Page[schemas.ImportOut](
        items=[await import_out(imports, job) for job in jobs],
        next_cursor=next_cursor.encode() if next_cursor else None,
    )


@router.get("/imports/{import_id}")
async def get_import(import_id: uuid.UUID, principal: PrincipalDep, imports: ImportServiceDep) -> schemas.ImportOut:
    """An import's status, progress, preview figures and first errors (poll while `validating` or `applying`)."""
    return await import_out(imports, await imports.get(principal.access, import_id))


def _error_cursor(value: str | None) -> tuple[int, uuid.UUID] | None:
    if not value:
        return None
    try:
        line, _, id_ = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode().partition(":")
        return int(line), uuid.UUID(id_)
    except (ValueError, UnicodeDecodeError):
        raise Invalid("The page cursor is not valid; start again from the first page.", field="cursor") from None


@router.get("/imports/{import_id}/errors")
async def list_import_errors(
    import_id: uuid.UUID,
    principal: PrincipalDep,
    imports: ImportServiceDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[schemas.RowErrorOut]:
    """Every error of the import, by line."""
    job = await imports.get(principal.access, import_id)
    found = await imports.repo.errors(job.id, _error_cursor(cursor), limit + 1)
    next_cursor = None
    if len(found) > limit:
        found = found[:limit]
        last = found[-1]
        next_cursor = base64.urlsafe_b64encode(f"{last.line}:{last.id}".encode()).decode().rstrip("=")
    return Page[schemas.RowErrorOut](
        items=[schemas.RowErrorOut.model_validate(e) for e in found], next_cursor=next_cursor
    )


@router.get(
    "/imports/{import_id}/errors.csv", response_class=StreamingResponse, responses={200: {"content": {"text/csv": {}}}}
)
async def download_error_report(
    import_id: uuid.UUID,
    request: Request,
    principal: PrincipalDep,
    imports: ImportServiceDep,
    delimiter: Literal["comma", "semicolon", "tab"] = "comma",
) -> StreamingResponse:
    """The errors as CSV for a spreadsheet (cells that could run as formulas are made plain text)."""
    job = await imports.get(principal.access, import_id)
    maker = request.app.state.read_sessionmaker

    async def body() -> AsyncIterator[bytes]:
        writer = ReportWriter(DELIMITERS[delimiter])
        yield writer.header()
        after: tuple[int, uuid.UUID] | None = None
        while True:
            async with maker() as session:
                page: list[ImportRowError] = await ImportRepository(session).errors(job.id, after, 2000)
            if not page:
                return
            yield writer.rows(page)
            after = (page[-1].line, page[-1].id)

    stem = job.filename.rsplit(".", 1)[0][:80] or "import"
    safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "-" for ch in stem)
    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="loi-{safe}.csv"'},
    )


# -- apply -----------------------------------------------------------------------------------------------------


@router.post(
    "/imports/{import_id}/apply",
    responses={202: {"model": schemas.ImportOut, "description": "A large file: applied in the background."}},
)
async def apply_import(
    import_id: uuid.UUID,
    body: schemas.ApplyIn,
    principal: PrincipalDep,
    imports: ImportServiceDep,
    settings: SettingsDep,
    response: Response,
) -> schemas.ImportOut:
    """Apply the previewed file: all rows or none, or only the valid rows; optionally zero what the file leaves out."""
    job = await imports.get(principal.access, import_id, lock=True)
    check_can_apply(job, body.mode)
    options = {"mode": body.mode.value, "zero_missing": body.zero_missing}
    job.status = ImportStatus.applying
    job.options = options
    job.processed_rows = 0
    await imports.repo.flush()
    if _inline(settings, int(job.detected.get("bytes", 0))):
        async with fetched(import_storage(settings), job.storage_key, scratch_dir(settings)) as path:
            await imports.apply(job, path, mode=body.mode, zero_missing=body.zero_missing)
        await imports.repo.flush()
    else:
        await enqueue(
            imports.repo.session,
            APPLY_KIND,
            {"import_id": str(job.id)},
            dedupe_key=f"import:{job.id}",
            organization_id=job.organization_id,
            max_attempts=MAX_ATTEMPTS,
        )
        response.status_code = status.HTTP_202_ACCEPTED
    return await import_out(imports, job)
