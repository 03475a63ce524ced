from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path

import pytest
from obstore.store import MemoryStore, S3Store

from agrimarket.media.storage import (
    LocalFile,
    LocalStorage,
    MissingObject,
    ObjectStorage,
    RemoteUrl,
    Storage,
    check_key,
    content_key,
    storage_for,
)

KEY = "images/ab/abcdef.jpg"


async def test_put_then_get_returns_the_same_bytes(backend: Storage) -> None:
    await backend.put(KEY, b"\xff\xd8\xffphoto", content_type="image/jpeg")
    assert await backend.get(KEY) == b"\xff\xd8\xffphoto"
    assert await backend.exists(KEY)


async def test_put_replaces_what_was_there(backend: Storage) -> None:
    await backend.put(KEY, b"old")
    await backend.put(KEY, b"new")
    assert await backend.get(KEY) == b"new"


async def test_a_missing_key_is_not_found_and_does_not_exist(backend: Storage) -> None:
    assert not await backend.exists(KEY)
    with pytest.raises(MissingObject) as caught:
        await backend.get(KEY)
    assert caught.value.status_code == 404
    with pytest.raises(MissingObject):
        async for _ in backend.stream(KEY):
            pass


async def test_delete_removes_and_deleting_twice_is_harmless(backend: Storage) -> None:
    await backend.put(KEY, b"x")
    await backend.delete(KEY)
    await backend.delete(KEY)
    assert not await backend.exists(KEY)


async def test_stream_yields_every_byte_in_chunks(backend: Storage) -> None:
    data = os.urandom(300_000)
    await backend.put(KEY, data)
    chunks = [chunk async for chunk in backend.stream(KEY, chunk_size=64 * 1024)]
    assert b"".join(chunks) == data


async def test_local_stream_holds_one_chunk_at_a_time(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    await storage.put(KEY, os.urandom(300_000))
    sizes = [len(chunk) async for chunk in storage.stream(KEY, chunk_size=64 * 1024)]
    assert sizes == [65536, 65536, 65536, 65536, 37856]


@pytest.mark.parametrize(
    "key",
    ["../etc/passwd", "/abs/path.jpg", "images/../../x", "images//x.jpg", "Images/X.JPG", "a/./b", "", "a b"],
)
async def test_keys_that_could_escape_the_root_or_differ_by_backend_are_refused(backend: Storage, key: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        await backend.put(key, b"x")


def test_content_key_is_the_sha256_of_the_bytes_fanned_out_by_prefix() -> None:
    key, digest = content_key("images", b"abc", "jpg")
    assert digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert key == f"images/ba/{digest}.jpg"
    assert check_key(key) == key


async def test_a_failed_local_write_keeps_the_old_file_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = LocalStorage(tmp_path)
    await storage.put(KEY, b"first")

    def failing_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        await storage.put(KEY, b"second, never complete")
    monkeypatch.undo()

    assert await storage.get(KEY) == b"first"
    assert sorted(p.name for p in (tmp_path / "images" / "ab").iterdir()) == ["abcdef.jpg"]


async def test_local_files_are_served_from_their_path(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    await storage.put(KEY, b"bytes")
    location = await storage.locate(KEY)
    assert isinstance(location, LocalFile)
    assert location.path == storage.root / KEY
    assert await asyncio.to_thread(location.path.read_bytes) == b"bytes"


async def test_an_in_memory_store_is_streamed_through_the_app() -> None:
    assert await ObjectStorage(MemoryStore()).locate(KEY) is None


async def test_a_public_base_url_gives_stable_urls() -> None:
    storage = ObjectStorage(MemoryStore(), public_base_url="https://cdn.example.vn/media/")
    assert await storage.locate(KEY) == RemoteUrl(f"https://cdn.example.vn/media/{KEY}")


async def test_s3_objects_get_presigned_urls_without_a_network_call() -> None:
    store = S3Store(
        "agrimarket-photos",
        region="ap-southeast-1",
        access_key_id="AKIAEXAMPLE",
        secret_access_key="not-a-real-secret",
    )
    location = await ObjectStorage(store, presign_ttl=timedelta(minutes=5)).locate(KEY)
    assert isinstance(location, RemoteUrl)
    assert KEY in location.url
    assert "X-Amz-Signature=" in location.url
    assert "X-Amz-Expires=300" in location.url


def test_storage_for_defaults_to_the_local_disk_under_the_data_dir(tmp_path: Path) -> None:
    local = storage_for(None, tmp_path)
    assert isinstance(local, LocalStorage)
    assert local.root == (tmp_path / "media").resolve()
    assert isinstance(storage_for("memory:///", tmp_path), ObjectStorage)
