"""Test doubles for the media tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

from agrimarket.media.storage import CHUNK_SIZE, ServeLocation, Storage


class CountingStorage:
    """Any storage, with every call counted: how the tests see that cached work is not redone."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.puts: list[str] = []
        self.gets: list[str] = []

    async def put(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        self.puts.append(key)
        await self.inner.put(key, data, content_type=content_type)

    async def get(self, key: str) -> bytes:
        self.gets.append(key)
        return await self.inner.get(key)

    def stream(self, key: str, *, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        return self.inner.stream(key, chunk_size=chunk_size)

    async def exists(self, key: str) -> bool:
        return await self.inner.exists(key)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def locate(self, key: str) -> ServeLocation:
        return await self.inner.locate(key)

    def reset(self) -> None:
        self.puts.clear()
        self.gets.clear()
