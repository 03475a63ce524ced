"""A marketplace added from outside: a separate distribution (tests/plugins/agrimarket-acme), installed with pip,
found by the core through its entry point alone, with no change to the core."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from agrimarket.channels.registry import load

ROOT = Path(__file__).resolve().parents[2]
ACME = ROOT / "tests" / "plugins" / "agrimarket-acme"

pytestmark = pytest.mark.slow


def install_plugin(source: Path, target: Path) -> Path:
    """Install a plugin distribution into ``target`` the way a deployment would, offline: built by its own
    backend from the environment (``--no-build-isolation``), nothing fetched. Built from a copy, so the build's
    leftovers stay out of the source tree."""
    build = target.parent / f"{source.name}-src"
    shutil.copytree(source, build, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
    done = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [*command, "--target", str(target), str(build)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert done.returncode == 0, f"pip could not install {source.name}:\n{done.stdout}\n{done.stderr}"
    return target


def run_python(code: str, *, path: Sequence[Path], env: Mapping[str, str] | None = None, timeout: float = 120) -> Any:
    """Run ``code`` in a fresh interpreter with ``path`` in front of ``sys.path`` (where plugins were installed)
    and return what it printed last, read as JSON. Fails the test with the program's output if it fails."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
        env={
            **os.environ,
            "AGRIMARKET_LOG_LEVEL": "WARNING",
            **(env or {}),
            "PYTHONPATH": os.pathsep.join(str(p) for p in [*path, ROOT]),
        },
    )
    assert done.returncode == 0, f"the program failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    lines = done.stdout.strip().splitlines()
    assert lines, f"the program printed nothing:\n{done.stderr}"
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def plugins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_plugin(ACME, tmp_path_factory.mktemp("plugins") / "site")


PUBLISH_AND_SET_STOCK = """
    import asyncio, json, uuid
    from importlib.metadata import entry_points

    from agrimarket.channels.base import ConnectionInfo, ListingDraft, StockUpdate, VariantDraft
    from agrimarket.channels.registry import load

    async def main() -> None:
        registry = load()
        acme = registry.get("acme")
        credentials = {"shop_id": "acme-shop-1", "api_key": "k"}
        connection = ConnectionInfo(uuid.uuid4(), uuid.uuid4(), "acme-shop-1", credentials)
        adapter = acme.adapter(connection, None)
        draft = ListingDraft(
            product_id=uuid.uuid4(),
            title="Sầu riêng Ri6",
            description="Cái Mơn, Bến Tre.",
            variants=[VariantDraft("SR-1KG", "1 kg", 150_000, 8, 1000, "kg")],
        )
        published = await adapter.publish(draft)
        sku_id = published.external_sku_ids["SR-1KG"]
        result = await adapter.set_stock([StockUpdate(published.external_item_id, sku_id, "SR-1KG", 3)])
        from acme_market.plugin import ITEMS

        [point] = entry_points(group="agrimarket.channels", name="acme")
        print(json.dumps({
            "names": registry.names,
            "failures": [f.error for f in registry.failures],
            "distribution": point.dist.metadata["Name"],
            "ok": result.ok,
            "item": ITEMS[published.external_item_id],
        }))

    asyncio.run(main())
"""


def test_an_installed_plugin_is_registered_beside_the_reference_and_its_adapter_publishes(plugins: Path) -> None:
    answer = run_python(PUBLISH_AND_SET_STOCK, path=[plugins])

    assert answer["names"] == sorted(["acme", *load().names])  # beside every built-in channel, none lost
    assert answer["failures"] == []
    assert answer["distribution"] == "agrimarket-acme"
    assert answer["ok"] is True
    assert answer["item"]["title"] == "Sầu riêng Ri6"
    [sku] = answer["item"]["skus"].values()
    assert sku == {"sku": "SR-1KG", "price": 150_000, "stock": 3}


def test_without_the_plugin_installed_the_core_knows_only_its_own_channels() -> None:
    answer = run_python(
        "import json; from agrimarket.channels.registry import load; print(json.dumps(load().names))", path=[]
    )
    assert "acme" not in answer
    assert {"lazada", "reference", "shopee"} <= set(answer)


SYNC_THROUGH_THE_ENGINE = """
    import asyncio, json, sys, tempfile
    from pathlib import Path

    from agrimarket import migrate
    from agrimarket.config import Environment, Settings, new_fernet_key
    from agrimarket.db import create_engine, make_sessionmaker
    from agrimarket.sync.engine import SyncEngine
    from agrimarket.sync.runtime import runtime
    from tests.sync.support import Farm

    async def main(data: Path) -> None:
        settings = Settings(
            env=Environment.test, data_dir=data, database_url=f"sqlite+aiosqlite:///{data / 'acme.db'}",
            secret_key="s", encryption_keys=new_fernet_key(), log_level="WARNING",
        )
        await asyncio.to_thread(migrate.upgrade, settings)
        engine = create_engine(settings)
        db = make_sessionmaker(engine)
        farm = await Farm.make(db)
        product = await farm.product("Mật ong hoa cà phê", variants=2, stock=7)
        connection = await farm.connect(
            settings, channel="acme", shop_id="acme-shop-2", credentials={"shop_id": "acme-shop-2", "api_key": "k"}
        )
        await farm.list_product(connection, product)
        parts = runtime(settings)  # the process's own registry, loaded from entry points: acme is in it
        report = await SyncEngine(
            db, settings, channels=parts.channels, http=parts.http, storage=parts.storage, owner="t"
        ).run(connection.id)
        from acme_market.plugin import ITEMS

        await engine.dispose()
        print(json.dumps({"outcome": report.outcome, "calls": dict(report.calls), "items": list(ITEMS.values())}))

    asyncio.run(main(Path(tempfile.mkdtemp())))
"""


def test_the_sync_engine_publishes_through_an_installed_plugin_with_no_change_to_the_core(plugins: Path) -> None:
    answer = run_python(SYNC_THROUGH_THE_ENGINE, path=[plugins])

    assert answer["outcome"] == "done"
    assert answer["calls"] == {"publish": 1}
    [item] = answer["items"]
    assert item["title"] == "Mật ong hoa cà phê"
    assert sorted(sku["stock"] for sku in item["skus"].values()) == [7, 7]
