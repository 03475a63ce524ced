"""What the sync engine needs from its process: the channel plugins, one shared HTTP client, photo storage.

Made once per process and event loop, on first use; tests and the demo put their own in place with
:func:`use_runtime` (e.g. sandboxes reached through ``httpx.ASGITransport``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from agrimarket.channels.http import new_client
from agrimarket.channels.registry import ChannelRegistry, channels
from agrimarket.config import Settings
from agrimarket.media.storage import Storage, storage_for


@dataclass(frozen=True)
class SyncRuntime:
    channels: ChannelRegistry
    http: httpx.AsyncClient
    storage: Storage


_override: SyncRuntime | None = None
_made: dict[int, SyncRuntime] = {}


def runtime(settings: Settings) -> SyncRuntime:
    if _override is not None:
        return _override
    loop = id(asyncio.get_running_loop())  # an httpx client belongs to the loop it was made on
    made = _made.get(loop)
    if made is None:
        made = SyncRuntime(
            channels=channels(),
            http=new_client(),
            storage=storage_for(
                settings.media_storage_url, settings.data_dir, public_base_url=settings.media_public_base_url or None
            ),
        )
        _made.clear()  # a new loop: the old one (and its client) is gone
        _made[loop] = made
    return made


@contextmanager
def use_runtime(value: SyncRuntime) -> Iterator[SyncRuntime]:
    global _override
    previous, _override = _override, value
    try:
        yield value
    finally:
        _override = previous


async def close_runtime() -> None:
    """Close the HTTP client this process made (on the way out of the server or the worker)."""
    made = list(_made.values())
    _made.clear()
    for parts in made:
        await parts.http.aclose()
