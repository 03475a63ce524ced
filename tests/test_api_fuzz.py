"""Property-based fuzzing of the whole JSON API (schemathesis over the OpenAPI document).

A real server on loopback, on its own throwaway database of the kind under test, is called with generated input
for every operation, logged in. Whatever the input, the answer is never a 5xx, and every documented answer
matches its schema: bad input gets a clear 4xx, never a crash.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks
from schemathesis.core.result import Ok

from agrimarket.cli import openapi_document
from tests.conftest import throwaway_database
from tests.factories import PASSWORD, SESSION_COOKIE, new_phone, product_body

# Deterministic by default, so a CI failure reproduces as is; AGRIMARKET_FUZZ_EXPLORE=1 draws new input every run.
EXPLORE = bool(os.environ.get("AGRIMARKET_FUZZ_EXPLORE"))
EXAMPLES = int(os.environ.get("AGRIMARKET_FUZZ_EXAMPLES", "40"))

# Logging out would end the session the rest of the run uses; it is covered by tests/accounts.
EXCLUDED_PATHS = ("/api/v1/auth/logout",)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("fuzz")
    port = _free_port()
    with throwaway_database(data_dir, "fuzz.db") as database_url:
        env = {
            **os.environ,
            "AGRIMARKET_ENV": "test",
            "AGRIMARKET_DATA_DIR": str(data_dir),
            "AGRIMARKET_DATABASE_URL": database_url,
            "AGRIMARKET_AUTO_MIGRATE": "true",
            "AGRIMARKET_LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "agrimarket.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
        log = (data_dir / "server.log").open("wb")
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        base_url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(base_url, process, data_dir / "server.log")
            yield base_url
        finally:
            process.terminate()
            process.wait(timeout=30)
            log.close()


def _wait_ready(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the server was not ready in time:\n{log.read_text()[-3000:]}")


@dataclass(frozen=True)
class Actor:
    """The fuzzing user, and real objects of theirs whose ids go into path parameters, so that generated
    bodies and queries reach the services instead of stopping at a 404."""

    headers: dict[str, str]
    path_ids: dict[str, str]


@pytest.fixture(scope="module")
def actor(server: str) -> Actor:
    with httpx.Client(base_url=server) as client:
        registered = client.post(
            "/api/v1/auth/register",
            json={
                "phone": new_phone(),
                "password": PASSWORD,
                "full_name": "Người Thử",
                "organization_name": "HTX Thử Nghiệm",
                "organization_kind": "cooperative",
            },
        )
        assert registered.status_code == 201, registered.text
        headers = {"Cookie": f"{SESSION_COOKIE}={registered.cookies[SESSION_COOKIE]}"}
        client.cookies.clear()
        organization_id = registered.json()["organizations"][0]["id"]
        product = client.post(
            f"/api/v1/organizations/{organization_id}/products",
            json=product_body(variants=2, initial_stock=50),
            headers=headers,
        )
        assert product.status_code == 201, product.text
        certification = client.post(
            f"/api/v1/products/{product.json()['id']}/certifications",
            json={"kind": "ocop", "number": "OCOP-FUZZ-1", "stars": 4},
            headers=headers,
        )
        assert certification.status_code == 201, certification.text
        token = client.post(
            "/api/v1/tokens", json={"name": "fuzz", "organization_id": organization_id}, headers=headers
        )
        assert token.status_code == 201, token.text
    return Actor(
        headers=headers,
        path_ids={
            "organization_id": organization_id,
            "product_id": product.json()["id"],
            "variant_id": product.json()["variants"][1]["id"],
            "certification_id": certification.json()["id"],
            "token_id": token.json()["id"],
        },
    )


# The document the app serves (tests/test_openapi.py proves the two are the same), read at collection time.
SCHEMA = schemathesis.openapi.from_dict(json.loads(openapi_document()))


def _operations() -> list[schemathesis.APIOperation[Any, Any, Any, Any]]:
    operations = []
    for result in SCHEMA.get_all_operations():
        assert isinstance(result, Ok), f"the OpenAPI document has an operation schemathesis cannot read: {result}"
        if result.ok().path not in EXCLUDED_PATHS:
            operations.append(result.ok())
    return operations


OPERATIONS = _operations()


# Valid input for every operation; invalid input for every operation that takes any (nothing to spoil otherwise).
CASES = [
    pytest.param(operation, mode, id=f"{mode.value} {operation.label}")
    for operation in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or any(True for _ in operation.iter_parameters()) or operation.body
]


@pytest.mark.parametrize(("operation", "mode"), CASES)
def test_no_input_makes_the_api_fail_or_break_its_contract(
    operation: schemathesis.APIOperation[Any, Any, Any, Any], mode: GenerationMode, server: str, actor: Actor
) -> None:
    # Real ids where the operation names them (valid input only: negative mode spoils path parameters too).
    names = {parameter.name for parameter in operation.path_parameters}
    known = {name: value for name, value in actor.path_ids.items() if name in names}
    fixed = known if known and mode is GenerationMode.POSITIVE else None

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=not EXPLORE,
    )
    def call(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(
            base_url=server,
            headers=actor.headers,
            checks=[checks.not_a_server_error, checks.response_schema_conformance],
        )

    try:
        call()
    except Unsatisfiable:
        if mode is GenerationMode.NEGATIVE:
            pytest.skip("every value of this operation's inputs is valid: there is no invalid input to send")
        raise
