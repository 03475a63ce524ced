"""``agrimarket worker``: the separate worker process, as deployments run it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agrimarket.config import Settings


def test_worker_command_runs_on_uvloop_until_sigterm_then_stops_gracefully(
    worker_settings: Settings, tmp_path: Path
) -> None:
    assert worker_settings.database_url is not None
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AGRIMARKET_")},
        "AGRIMARKET_ENV": "production",
        "AGRIMARKET_DATA_DIR": str(tmp_path),
        "AGRIMARKET_DATABASE_URL": worker_settings.database_url,
        "AGRIMARKET_SECRET_KEY": "a-worker-test-secret-key-long-enough-for-production-use",
        "AGRIMARKET_ENCRYPTION_KEYS": ",".join(key.get_secret_value() for key in worker_settings.encryption_keys),
        "AGRIMARKET_LOG_LEVEL": "INFO",
        "AGRIMARKET_WORKER_SCHEDULER": "false",
    }
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        command = [sys.executable, "-m", "agrimarket.cli", "worker", "--id", "command-test"]
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            deadline = time.monotonic() + 30
            while "worker_started" not in log_path.read_text() and process.poll() is None:
                assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.1)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0, log_path.read_text()[-3000:]
        finally:
            if process.poll() is None:
                process.kill()
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    started = next(line for line in lines if line["event"] == "worker_started")
    assert started["worker_id"] == "command-test"
    assert started["event_loop"] == "uvloop"
    assert "worker_stopped" in [line["event"] for line in lines]
    assert "Traceback" not in log_path.read_text()
