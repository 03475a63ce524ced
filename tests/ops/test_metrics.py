"""Prometheus metrics at /metrics: route templates as labels, and several processes added up."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from starlette.staticfiles import StaticFiles

from agrimarket.observability import MULTIPROC_DIR_ENV
from tests.factories import register

ROOT = Path(__file__).resolve().parents[2]
DURATION_COUNT = "agrimarket_http_request_duration_seconds_count"
IN_FLIGHT = "agrimarket_http_requests_in_flight"


def sample(exposition: str, name: str, **labels: str) -> float | None:
    """The value of the one sample with this name and exactly these labels, or None when there is none."""
    for family in text_string_to_metric_families(exposition):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return None


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_request_latency_is_labelled_with_the_route_template_not_the_raw_path(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client)
    route = "/api/v1/organizations/{organization_id}"
    labels = {"method": "GET", "route": route, "status": "2xx"}
    before = sample(await scrape(client), DURATION_COUNT, **labels) or 0.0

    response = await client.get(f"/api/v1/organizations/{account.organization_id}", headers=account.headers)
    assert response.status_code == 200, response.text

    exposition = await scrape(client)
    assert sample(exposition, DURATION_COUNT, **labels) == before + 1
    assert account.organization_id not in exposition
    assert sample(exposition, IN_FLIGHT) == 1.0  # the scrape itself


async def test_unknown_paths_share_one_label(client: httpx.AsyncClient) -> None:
    labels = {"method": "GET", "route": "<unmatched>", "status": "4xx"}
    before = sample(await scrape(client), DURATION_COUNT, **labels) or 0.0

    for path in ("/wp-login.php", "/no/such/page", "/api/v1/organizations/x/y/z"):
        assert (await client.get(path)).status_code == 404

    exposition = await scrape(client)
    assert sample(exposition, DURATION_COUNT, **labels) == before + 3
    assert "wp-login" not in exposition


async def test_marketplace_pushes_are_labelled_with_their_route_template(client: httpx.AsyncClient) -> None:
    labels = {"method": "POST", "route": "/webhooks/{channel}/{connection_id}", "status": "4xx"}
    before = sample(await scrape(client), DURATION_COUNT, **labels) or 0.0

    unknown_shop = "0b0e5b9e-4c55-4d2a-9a57-3c8c2f1e9a10"
    response = await client.post(f"/webhooks/shopee/{unknown_shop}", content=b"{}")
    assert response.status_code == 404

    exposition = await scrape(client)
    assert sample(exposition, DURATION_COUNT, **labels) == before + 1
    assert unknown_shop not in exposition


@pytest.fixture
def static_files(app: FastAPI, tmp_path: Path) -> None:
    for name in ("a.css", "b.css"):
        (tmp_path / name).write_text("body {}")
    app.mount("/files", StaticFiles(directory=tmp_path))


async def test_requests_to_a_mounted_app_share_the_mount_label(static_files: None, client: httpx.AsyncClient) -> None:
    labels = {"method": "GET", "route": "/files/{path}", "status": "2xx"}
    before = sample(await scrape(client), DURATION_COUNT, **labels) or 0.0

    for name in ("a.css", "b.css"):
        assert (await client.get(f"/files/{name}")).status_code == 200

    assert sample(await scrape(client), DURATION_COUNT, **labels) == before + 2


@dataclass(frozen=True)
class SharedMetrics:
    directory: Path
    files: list[str]  # what the processes left in it


@pytest.fixture
def metrics_of_two_processes(tmp_path: Path) -> SharedMetrics:
    """Two processes that each start the app, serve /healthz (3 and 4 times) and shut down, sharing one folder."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = {**os.environ, MULTIPROC_DIR_ENV: str(directory)}
    processes = [
        subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [sys.executable, "-m", "tests.ops.multiprocess_worker", str(requests), str(tmp_path / f"data-{requests}")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for requests in (3, 4)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr.decode(errors="replace")
    return SharedMetrics(directory, sorted(path.name for path in directory.iterdir()))


async def test_metrics_add_up_the_requests_of_every_server_process(
    metrics_of_two_processes: SharedMetrics, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = metrics_of_two_processes.files
    assert len([name for name in files if name.startswith("histogram_")]) == 2, files  # one file per process
    # Each process dropped its live gauges when it shut down, so a dead process's requests in flight do not count.
    assert not [name for name in files if name.startswith("gauge_livesum_")], files

    monkeypatch.setenv(MULTIPROC_DIR_ENV, str(metrics_of_two_processes.directory))
    exposition = await scrape(client)

    assert sample(exposition, DURATION_COUNT, method="GET", route="/healthz", status="2xx") == 7
    assert sample(exposition, IN_FLIGHT) in (None, 0.0)


async def test_metrics_can_be_closed_behind_a_bearer_token(app: FastAPI, client: httpx.AsyncClient) -> None:
    app.state.settings = app.state.settings.model_copy(update={"metrics_token": SecretStr("scrape-me")})
    assert (await client.get("/metrics")).status_code == 401
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
    allowed = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert allowed.status_code == 200
    assert "agrimarket_http_request" in allowed.text
