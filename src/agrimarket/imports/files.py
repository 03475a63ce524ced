"""An uploaded file's bytes: spooled to disk as they arrive (hashed and capped on the way), kept in the media
storage for the worker, and fetched back to a local file to read. Never held whole in memory.

The media ``Storage`` port takes bytes; for the two backends it has, a file is moved in and out in chunks here
(the local disk: copied beside its final name and renamed into place; an object store: obstore's multipart put
from the file), and any other backend gets the bytes in one piece, within the upload limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import obstore

from agrimarket.errors import PayloadTooLarge
from agrimarket.media.storage import LocalStorage, MissingObject, ObjectStorage, Storage, check_key

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Spooled:
    path: Path
    size: int
    sha256: str
    head: bytes


async def spool(read: Callable[[int], Awaitable[bytes]], directory: Path, max_bytes: int) -> Spooled:
    """Copy an upload to a temporary file (the caller deletes it), refusing it once it passes ``max_bytes``."""
    fd, name = await asyncio.to_thread(_temporary, directory, ".upload-")
    path = Path(name)
    digest = hashlib.sha256()
    size = 0
    head = b""
    try:
        with os.fdopen(fd, "wb") as handle:
            while chunk := await read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(
                        f"This file is larger than {max_bytes // (1024 * 1024)} MB. Split it into smaller files.",
                        field="file",
                    )
                if len(head) < 8:
                    head = (head + chunk)[:8]
                digest.update(chunk)
                await asyncio.to_thread(handle.write, chunk)
    except BaseException:
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise
    return Spooled(path=path, size=size, sha256=digest.hexdigest(), head=head)


async def store(storage: Storage, key: str, path: Path) -> None:
    check_key(key)
    if isinstance(storage, LocalStorage):
        await asyncio.to_thread(_copy_into_place, path, storage.path_for(key))
    elif isinstance(storage, ObjectStorage):
        await obstore.put_async(storage.store, key, path, use_multipart=True)
    else:
        await storage.put(key, await asyncio.to_thread(path.read_bytes))


def _temporary(directory: Path, prefix: str) -> tuple[int, str]:
    directory.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=directory, prefix=prefix)


def _copy_into_place(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out, CHUNK)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


@asynccontextmanager
async def fetched(storage: Storage, key: str, directory: Path) -> AsyncIterator[Path]:
    """The stored file as a local path for the duration of the block (the local disk's own file, or a copy)."""
    if isinstance(storage, LocalStorage):
        path = storage.path_for(key)
        if not await asyncio.to_thread(path.is_file):
            raise MissingObject("The uploaded file is no longer stored. Upload it again.")
        yield path
        return
    fd, name = await asyncio.to_thread(_temporary, directory, ".import-")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            async for chunk in storage.stream(key, chunk_size=CHUNK):
                await asyncio.to_thread(handle.write, chunk)
        yield path
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)


@asynccontextmanager
async def fetched_if_stored(storage: Storage, key: str, directory: Path) -> AsyncIterator[Path | None]:
    """Like :func:`fetched`, with None for a key that is not stored."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            path: Path | None = await stack.enter_async_context(fetched(storage, key, directory))
        except MissingObject:
            path = None
        yield path


class Staged:
    """A local file being written, to be put in the storage under ``key`` by :meth:`keep`."""

    def __init__(self, storage: Storage, key: str, path: Path) -> None:
        self.storage = storage
        self.key = key
        self.path = path

    async def keep(self) -> None:
        if isinstance(self.storage, LocalStorage):
            # Written in the target's own folder: a rename puts it in place, without a copy.
            await asyncio.to_thread(os.replace, self.path, self.storage.path_for(self.key))
        else:
            await store(self.storage, self.key, self.path)


@asynccontextmanager
async def staged(storage: Storage, key: str, directory: Path) -> AsyncIterator[Staged]:
    """A local file to write and then keep in the storage under ``key``; removed if not kept by the block's end."""
    check_key(key)
    if isinstance(storage, LocalStorage):
        directory = storage.path_for(key).parent
    fd, name = await asyncio.to_thread(_temporary, directory, ".tmp-")
    os.close(fd)
    path = Path(name)
    try:
        yield Staged(storage, key, path)
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)
