"""Storage for the media tests: the real local backend, and obstore's in-memory store behind the same port."""

from __future__ import annotations

from pathlib import Path

import pytest
from obstore.store import MemoryStore

from agrimarket.media.storage import LocalStorage, ObjectStorage, Storage
from tests.media.support import CountingStorage


@pytest.fixture(params=["local", "obstore-memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "media")
    return ObjectStorage(MemoryStore())


@pytest.fixture
def any_storage(backend: Storage) -> CountingStorage:
    """Each backend in turn: for the tests where the backend's behaviour matters."""
    return CountingStorage(backend)


@pytest.fixture
def storage(tmp_path: Path) -> CountingStorage:
    """The default backend (local disk): for the pipeline's own behaviour."""
    return CountingStorage(LocalStorage(tmp_path / "media"))
