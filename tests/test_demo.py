"""README's run command is a demo: the server starts with the Shopee and Lazada sandboxes mounted, a demo
cooperative's products appear on both sandbox shops within seconds, a stock change follows them there, and a
restart keeps the shops as they were (no second copy of any item)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from agrimarket.demo.catalog import PRODUCTS
from agrimarket.demo.seed import DEMO_PASSWORD, DEMO_PHONE
from tests.test_api_fuzz import _free_port, _wait_ready

pytestmark = pytest.mark.slow

SHOPS = {
    "shopee": "/sandbox/shopee/sandbox/shops/1000001",
    "lazada": "/sandbox/lazada/sandbox/shops/1000001",
    "tiktok": "/sandbox/tiktok/sandbox/shops/7490000000001000001",
    "tiki": "/sandbox/tiki/sandbox/shops/1000001",  # one Tiki product per variant: the same SKUs on its page
}
STOCK_CELL = re.compile(r'<code>([A-Z0-9-]+)</code></td><td class="n">[^<]*</td><td class="n stock">(\d+)</td>')


@contextmanager
def demo_server(data_dir: Path, port: int) -> Iterator[str]:
    env = {
        **os.environ,
        "AGRIMARKET_ENV": "development",
        "AGRIMARKET_DEMO": "true",
        "AGRIMARKET_DATA_DIR": str(data_dir),
        "AGRIMARKET_DATABASE_URL": "",  # the embedded default: SQLite in the data dir
        "AGRIMARKET_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "agrimarket.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    log_path = data_dir / f"server-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        base_url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(base_url, process, log_path)
            yield base_url
        finally:
            process.send_signal(signal.SIGTERM)
            # uvicorn shuts down gracefully, then re-raises the signal it caught.
            assert process.wait(timeout=30) in (0, -signal.SIGTERM)
            assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]


def shop_stock(base_url: str, channel: str) -> dict[str, int]:
    """What a person sees on the sandbox shop's page: each SKU and its stock."""
    page = httpx.get(f"{base_url}{SHOPS[channel]}", timeout=5)
    assert page.status_code == 200
    return {sku: int(stock) for sku, stock in STOCK_CELL.findall(page.text)}


def shows(base_url: str, channel: str, expected: dict[str, int]) -> Callable[[], bool]:
    return lambda: shop_stock(base_url, channel) == expected


def eventually(check: Callable[[], bool], within: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within:
            pytest.fail(f"not within {within}s: {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def test_the_demo_publishes_to_both_sandboxes_follows_a_stock_change_and_survives_a_restart(tmp_path: Path) -> None:
    expected = {v.sku: v.stock for p in PRODUCTS for v in p.variants}
    port = _free_port()

    with demo_server(tmp_path, port) as base_url:
        for channel in SHOPS:
            eventually(shows(base_url, channel, expected), 20, f"every demo SKU on {channel}")

        with httpx.Client(base_url=base_url) as client:
            logged_in = client.post("/api/v1/auth/login", json={"phone": DEMO_PHONE, "password": DEMO_PASSWORD})
            assert logged_in.status_code == 200
            organization_id = logged_in.json()["organizations"][0]["id"]
            stock = client.get(f"/api/v1/organizations/{organization_id}/stock", params={"limit": 100}).json()
            durian = next(row for row in stock["items"] if row["sku"] == "SR-RI6-KG")
            changed = client.put(
                f"/api/v1/variants/{durian['variant_id']}/stock", json={"on_hand": 7, "reason": "bán tại vườn"}
            )
            assert changed.status_code == 200, changed.text

        expected["SR-RI6-KG"] = 7
        for channel in SHOPS:
            eventually(shows(base_url, channel, expected), 10, f"the new durian stock on {channel}")

        # A buyer presses "buy 1" on the Shopee sandbox page: the signed push comes back to our webhook, the
        # order is recorded, and the Lazada shop offers one durian fewer.
        bought = httpx.post(f"{base_url}{SHOPS['shopee']}/orders", data={"seller_sku": "SR-RI6-KG"})
        assert bought.status_code in (200, 303), bought.text
        expected["SR-RI6-KG"] = 6
        eventually(shows(base_url, "lazada", expected), 10, "the sale on Shopee taken off Lazada")
        with httpx.Client(base_url=base_url) as client:
            client.post("/api/v1/auth/login", json={"phone": DEMO_PHONE, "password": DEMO_PASSWORD})
            orders = client.get(f"/api/v1/organizations/{organization_id}/orders").json()["items"]
        assert [order["channel"] for order in orders] == ["shopee"]

    with demo_server(tmp_path, port) as base_url:
        for channel in SHOPS:
            assert shop_stock(base_url, channel) == expected  # kept, not published a second time
        page = httpx.get(f"{base_url}{SHOPS['shopee']}").text
        assert page.count("data-item-id") == len(PRODUCTS)
