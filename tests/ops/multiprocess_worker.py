"""One server process's life through the app: start-up, some requests, shut-down.

Run as ``python -m tests.ops.multiprocess_worker <requests> <data_dir>`` with ``PROMETHEUS_MULTIPROC_DIR`` set, by
the multiprocess metrics test; not a test itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

from starlette.testclient import TestClient

from agrimarket.app import create_app
from agrimarket.config import Environment, Settings, new_fernet_key


def main(requests: int, data_dir: Path) -> None:
    settings = Settings(
        env=Environment.test,
        data_dir=data_dir,
        database_url=f"sqlite+aiosqlite:///{data_dir / 'agrimarket.db'}",
        secret_key="multiprocess-test",
        encryption_keys=new_fernet_key(),
        auto_migrate=False,
        run_worker_in_process=False,  # the database is empty: only the HTTP side is under test
        log_level="WARNING",
    )
    # The client runs the lifespan through the whole middleware stack, start-up and shut-down, as a server does.
    with TestClient(create_app(settings)) as client:
        for _ in range(requests):
            response = client.get("/healthz")
            assert response.status_code == 200, response.text


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
