"""Where photo bytes live: a small async port with a local-disk backend and an object-store backend.

The local backend (the default) keeps files under the data dir; writes go to a temporary file in the same
folder and are renamed into place, so a reader never sees half a photo, even if the process dies mid-write.

The object-store backend speaks to S3-compatible storage (AWS S3, MinIO, Cloudflare R2, …) and also to GCS and
Azure through **obstore**: it is maintained, async-native (no thread pool wrapped around a sync client), small
(one Rust extension built on the Apache Arrow ``object_store`` crate, no transitive dependencies), and has none of
boto3/botocore's import weight or memory. Its ``MemoryStore`` lets the tests run this very code without a server.
Object stores make every put atomic, so the same guarantee holds there. (obstore reports a missing object as the
built-in ``FileNotFoundError``.)

Keys are plain relative paths (``images/ab/<sha256>.jpg``). Photos are stored under their content hash, so a key
never changes meaning, and a URL built from it can be cached forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import obstore
from obstore.store import AzureStore, GCSStore, S3Store

from agrimarket.errors import NotFound

if TYPE_CHECKING:
    from obstore.store import ObjectStore

# Lower-case segments of letters, digits, dot, dash, underscore; no empty, "." or ".." segment, no leading "/".
_KEY = re.compile(r"^(?!.*(?:^|/)\.{1,2}(?:/|$))[a-z0-9._-]+(?:/[a-z0-9._-]+)*$")
CHUNK_SIZE = 256 * 1024
IMMUTABLE_CACHE_CONTROL = "public, max-age=31536000, immutable"


class MissingObject(NotFound):
    """The key is not (or no longer) in storage."""


def check_key(key: str) -> str:
    """Refuse anything that could escape the storage root or mean two things on two backends."""
    if len(key) > 300 or not _KEY.match(key):
        raise ValueError(f"invalid storage key: {key!r}")
    return key


def content_key(prefix: str, data: bytes, extension: str) -> tuple[str, str]:
    """``(key, sha256)`` for bytes stored under their own hash, fanned out by its first two hex digits."""
    digest = hashlib.sha256(data).hexdigest()
    return check_key(f"{prefix}/{digest[:2]}/{digest}.{extension}"), digest


@dataclass(frozen=True, slots=True)
class LocalFile:
    """Serve this file directly (``FileResponse``, or ``X-Accel-Redirect`` behind nginx)."""

    path: Path


@dataclass(frozen=True, slots=True)
class RemoteUrl:
    """Redirect the client here (a public bucket/CDN URL, or a short-lived presigned one)."""

    url: str


ServeLocation = LocalFile | RemoteUrl | None
"""Where to send a client for a key; ``None`` means stream it through the app with :meth:`Storage.stream`."""


@runtime_checkable
class Storage(Protocol):
    async def put(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        """Store ``data`` under ``key`` atomically, replacing what was there."""

    async def get(self, key: str) -> bytes:
        """The bytes under ``key``; :class:`MissingObject` if there are none."""

    def stream(self, key: str, *, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """The bytes under ``key`` in chunks, for a ``StreamingResponse``."""

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error (deletes are retried)."""

    async def locate(self, key: str) -> ServeLocation:
        """How a client should fetch ``key``."""


class LocalStorage:
    """Files under ``root`` (by default ``<data dir>/media``)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path_for(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        await asyncio.to_thread(self._put_sync, self.path_for(key), data)

    @staticmethod
    def _put_sync(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Same folder as the target, so the rename cannot cross file systems and stays atomic.
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; the web server may run as another user
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    async def get(self, key: str) -> bytes:
        path = self.path_for(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise MissingObject("This photo is no longer stored.") from None

    async def stream(self, key: str, *, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        path = self.path_for(key)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise MissingObject("This photo is no longer stored.") from None
        try:
            while chunk := await asyncio.to_thread(handle.read, chunk_size):
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path_for(key).is_file)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path_for(key).unlink, missing_ok=True)

    async def locate(self, key: str) -> ServeLocation:
        return LocalFile(self.path_for(key))


class ObjectStorage:
    """Any obstore store: ``S3Store`` (S3, MinIO, R2), ``GCSStore``, ``AzureStore``, or ``MemoryStore``.

    ``public_base_url`` (a CDN or public bucket in front of the store) gives stable URLs that browsers cache;
    without it, stores that can sign get short-lived presigned GET URLs, and others are streamed by the app.
    """

    def __init__(
        self,
        store: ObjectStore,
        *,
        public_base_url: str | None = None,
        presign_ttl: timedelta = timedelta(hours=1),
    ) -> None:
        self.store = store
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.presign_ttl = presign_ttl

    async def put(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        attributes = {"Cache-Control": IMMUTABLE_CACHE_CONTROL}
        if content_type:
            attributes["Content-Type"] = content_type
        # Photos are a few MB at most: one request, no multipart upload left behind on failure.
        await obstore.put_async(self.store, check_key(key), data, attributes=attributes, use_multipart=False)

    async def get(self, key: str) -> bytes:
        try:
            result = await obstore.get_async(self.store, check_key(key))
            return (await result.bytes_async()).to_bytes()
        except FileNotFoundError:
            raise MissingObject("This photo is no longer stored.") from None

    async def stream(self, key: str, *, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        try:
            result = await obstore.get_async(self.store, check_key(key))
        except FileNotFoundError:
            raise MissingObject("This photo is no longer stored.") from None
        async for chunk in result.stream(min_chunk_size=chunk_size):
            yield bytes(chunk)

    async def exists(self, key: str) -> bool:
        try:
            await obstore.head_async(self.store, check_key(key))
        except FileNotFoundError:
            return False
        return True

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await obstore.delete_async(self.store, check_key(key))

    async def locate(self, key: str) -> ServeLocation:
        check_key(key)
        if self.public_base_url:
            return RemoteUrl(f"{self.public_base_url}/{key}")
        if isinstance(self.store, S3Store | GCSStore | AzureStore):
            return RemoteUrl(await obstore.sign_async(self.store, "GET", key, self.presign_ttl))
        return None


def local_storage(data_dir: Path) -> LocalStorage:
    """The default: photos on the local disk, beside the SQLite file."""
    return LocalStorage(data_dir / "media")


def storage_for(url: str | None, data_dir: Path, *, public_base_url: str | None = None) -> Storage:
    """Storage from one setting: empty for the local disk, else an object-store URL (``s3://bucket/prefix``,
    ``gs://…``, ``az://…``, ``memory:///``); credentials and endpoint (``AWS_ENDPOINT_URL`` for MinIO/R2) come
    from the standard environment variables, which obstore reads itself."""
    if not url:
        return local_storage(data_dir)
    return ObjectStorage(obstore.store.from_url(url), public_base_url=public_base_url)
