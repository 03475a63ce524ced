"""Photos API: a product's photos (add, list, reorder, remove), and the stored files under ``/media``.

``GET /media/{key}`` needs no login, on purpose. Product photos are public by nature (buyers see them on every
marketplace), and a key is the SHA-256 of the file's bytes: unguessable without the photo itself, and it never
changes meaning, so every answer can be cached forever by browsers and CDNs. Only the two prefixes the pipeline
writes are served: ``images/`` (the normalised photo: upright, sRGB, every bit of metadata removed; an upload's
original bytes are never stored) and ``renditions/``. Each of those files was encoded by us as JPEG, PNG or WebP
and is sent with its own content type and ``nosniff``, so an upload cannot turn into a page on our origin.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile, status
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse

from agrimarket.accounts.repository import AccountRepository
from agrimarket.accounts.service import AccountService
from agrimarket.config import Settings
from agrimarket.deps import PrincipalDep, SessionDep, SettingsDep, get_optional_principal, get_principal
from agrimarket.errors import NotFound
from agrimarket.media import schemas
from agrimarket.media.pipeline import MASTER_PREFIX, RENDITION_PREFIX, MediaLimits, read_capped
from agrimarket.media.repository import MediaRepository
from agrimarket.media.rules import MB, WEB_RULES, OutputFormat
from agrimarket.media.service import MediaService, Photo, delete_blobs
from agrimarket.media.storage import IMMUTABLE_CACHE_CONTROL, LocalFile, RemoteUrl, Storage, check_key
from agrimarket.models import Rendition

router = APIRouter(prefix="/api/v1", tags=["photos"])
files_router = APIRouter(tags=["media"])

MEDIA_PATH = "/media"
# Multipart framing and the small form fields around the photo itself.
UPLOAD_OVERHEAD = 64 * 1024
_SERVED_PREFIXES = (f"{MASTER_PREFIX}/", f"{RENDITION_PREFIX}/")
_CONTENT_TYPES = {output.extension: output.mime_type for output in OutputFormat}
_THUMBNAILS = frozenset(rule.purpose for rule in WEB_RULES)
_NO_SUCH_FILE = "There is no such photo."


def media_limits(settings: Settings) -> MediaLimits:
    return MediaLimits(
        max_bytes=settings.media_max_upload_mb * MB, max_pixels=settings.media_max_megapixels * 1_000_000
    )


def upload_body_limit(settings: Settings) -> int:
    """The request body limit for this router: a larger upload is refused as it arrives, before it is parsed."""
    return media_limits(settings).max_bytes + UPLOAD_OVERHEAD


def get_storage(request: Request) -> Storage:
    storage: Storage = request.app.state.media_storage
    return storage


StorageDep = Annotated[Storage, Depends(get_storage)]


def get_media_service(session: SessionDep, storage: StorageDep, settings: SettingsDep) -> MediaService:
    return MediaService(MediaRepository(session), storage, limits=media_limits(settings))


MediaServiceDep = Annotated[MediaService, Depends(get_media_service)]


async def _delete_after_commit(storage: StorageDep) -> AsyncIterator[list[str]]:
    """Storage keys to delete once the request's transaction has committed.

    A route lists this in ``dependencies=[...]``: a request-scoped dependency, left after the response is sent,
    so after the function-scoped session (``deps.SessionDep``) has committed. If the endpoint or the commit raised,
    it never gets past ``yield`` and the files stay with their rows.
    """
    keys: list[str] = []
    yield keys
    await delete_blobs(storage, keys)


DeleteAfterCommit = Annotated[list[str], Depends(_delete_after_commit)]


def _url(settings: Settings, key: str) -> str:
    base = settings.media_public_base_url.rstrip("/") if settings.media_public_base_url else MEDIA_PATH
    return f"{base}/{key}"


def _image_out(settings: Settings, rendition: Rendition) -> schemas.ImageOut:
    return schemas.ImageOut(
        url=_url(settings, rendition.storage_key),
        width=rendition.width,
        height=rendition.height,
        mime_type=rendition.mime_type,
        byte_size=rendition.byte_size,
    )


def photo_out(settings: Settings, photo: Photo) -> schemas.PhotoOut:
    asset = photo.asset
    thumbnails = sorted(
        (r for purpose, r in photo.renditions.items() if purpose in _THUMBNAILS), key=lambda r: (r.width, r.purpose)
    )
    return schemas.PhotoOut(
        id=asset.id,
        product_id=asset.product_id,
        variant_id=asset.variant_id,
        position=asset.position,
        width=asset.width,
        height=asset.height,
        mime_type=asset.mime_type,
        url=_url(settings, asset.storage_key),
        original_filename=asset.original_filename,
        created_at=asset.created_at,
        thumbnails=[_image_out(settings, r) for r in thumbnails],
        renditions={
            purpose: _image_out(settings, r)
            for purpose, r in sorted(photo.renditions.items())
            if purpose not in _THUMBNAILS
        },
    )


async def _upload_target(
    request: Request, settings: Settings, storage: Storage, product_id: uuid.UUID, variant_id: uuid.UUID | None
) -> uuid.UUID:
    """The caller and the product they add a photo to, checked on a short read-only session of its own.

    So the request's own transaction starts only at the service's first statement, after the photo is decoded
    and rendered: on SQLite a writing transaction holds the database's write lock from its first statement, and
    ``PrincipalDep`` on the request's session would take it before the upload is even read, queueing every other
    write behind the image work. A caller who may not add the photo is turned away before any of that work.
    """
    async with request.app.state.read_sessionmaker() as session:
        principal = await get_principal(
            await get_optional_principal(request, AccountService(AccountRepository(session)), settings)
        )
        media = MediaService(MediaRepository(session), storage)
        return await media.product_organization(principal.access, product_id, variant_id=variant_id)


@router.post(
    "/products/{product_id}/photos",
    status_code=status.HTTP_201_CREATED,
    responses={413: {"description": "The photo is larger than the byte or pixel limit."}},
)
async def add_photo(
    request: Request,
    product_id: uuid.UUID,
    photo: Annotated[UploadFile, File(description="A JPEG, PNG, WebP or HEIC photo.")],
    media: MediaServiceDep,
    settings: SettingsDep,
    variant_id: Annotated[
        uuid.UUID | None, Form(description="The variant this photo shows, when it is not the whole product.")
    ] = None,
) -> schemas.PhotoOut:
    """Add a photo (last in the product's order), made ready for the web and every channel at once."""
    organization_id = await _upload_target(request, settings, media.storage, product_id, variant_id)
    data = await read_capped(photo.read, media.limits)
    added = await media.add_photo(
        organization_id=organization_id,
        product_id=product_id,
        variant_id=variant_id,
        data=data,
        filename=photo.filename,
    )
    return photo_out(settings, added)


@router.get("/products/{product_id}/photos")
async def list_photos(
    product_id: uuid.UUID, principal: PrincipalDep, media: MediaServiceDep, settings: SettingsDep
) -> list[schemas.PhotoOut]:
    """The product's photos in display order; the first is the main image on every channel."""
    organization_id = await media.product_organization(principal.access, product_id)
    photos = await media.photos(organization_id=organization_id, product_id=product_id)
    return [photo_out(settings, p) for p in photos]


@router.put("/products/{product_id}/photos/order")
async def reorder_photos(
    product_id: uuid.UUID,
    body: schemas.PhotoOrder,
    principal: PrincipalDep,
    media: MediaServiceDep,
    settings: SettingsDep,
) -> list[schemas.PhotoOut]:
    """Put the product's photos in a new order; the list must name each of its photos exactly once."""
    organization_id = await media.product_organization(principal.access, product_id)
    photos = await media.reorder(organization_id=organization_id, product_id=product_id, asset_ids=body.photo_ids)
    return [photo_out(settings, p) for p in photos]


@router.delete(
    "/photos/{photo_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[Depends(_delete_after_commit)]
)
async def remove_photo(
    photo_id: uuid.UUID, principal: PrincipalDep, media: MediaServiceDep, delete_after_commit: DeleteAfterCommit
) -> None:
    """Remove a photo from its product; its files are deleted once no other photo uses them."""
    organization_id = await media.photo_organization(principal.access, photo_id)
    delete_after_commit.extend(await media.remove_photo(organization_id=organization_id, asset_id=photo_id))


def _content_type(key: str) -> str:
    """The content type of a file we serve; 404 for anything else (other prefixes, traversal, odd names)."""
    try:
        check_key(key)
    except ValueError:
        raise NotFound(_NO_SUCH_FILE) from None
    content_type = _CONTENT_TYPES.get(key.rpartition(".")[2])
    if content_type is None or not key.startswith(_SERVED_PREFIXES):
        raise NotFound(_NO_SUCH_FILE)
    return content_type


@files_router.get(
    f"{MEDIA_PATH}/{{key:path}}",
    response_class=Response,
    responses={
        200: {"content": {mime: {} for mime in _CONTENT_TYPES.values()}, "description": "The image."},
        307: {"description": "Fetch it from the object store (a CDN or a short-lived signed URL)."},
        404: {"description": "No such photo."},
    },
)
async def media_file(key: str, storage: StorageDep) -> Response:
    """A stored photo or rendition. Public, and cached forever: its key is its content hash."""
    content_type = _content_type(key)
    location = await storage.locate(key)
    if isinstance(location, RemoteUrl):
        return RedirectResponse(location.url, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
    headers = {"Cache-Control": IMMUTABLE_CACHE_CONTROL, "X-Content-Type-Options": "nosniff"}
    if isinstance(location, LocalFile):
        if not await asyncio.to_thread(location.path.is_file):
            raise NotFound(_NO_SUCH_FILE)
        return FileResponse(location.path, media_type=content_type, headers=headers)
    if not await storage.exists(key):
        raise NotFound(_NO_SUCH_FILE)
    return StreamingResponse(storage.stream(key), media_type=content_type, headers=headers)
