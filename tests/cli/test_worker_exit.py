"""`imgpipe worker` exits 0 when asked to stop (the failure side: tests/unit/test_run_worker.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from backends import REDIS_URL, check_broker, purge_queue, run_id


def _worker(tmp_path: Path, queue: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGPIPE_")}
    env.update(
        {
            "IMGPIPE_BROKER_URL": REDIS_URL,
            "IMGPIPE_QUEUE_NAME": queue,
            "IMGPIPE_DATABASE_URL": f"sqlite:///{tmp_path / 'imgpipe.db'}",
            "IMGPIPE_STORAGE_URL": f"file://{tmp_path / 'objects'}",
            "IMGPIPE_DATA_DIR": str(tmp_path / "data"),
        }
    )
    upgrade = [sys.executable, "-m", "imgpipe", "db", "upgrade"]
    subprocess.run(upgrade, env=env, check=True, capture_output=True)
    command = [sys.executable, "-m", "imgpipe", "worker", "--concurrency", "2"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_worker_stopped_with_sigterm_exits_0(tmp_path: Path) -> None:
    check_broker(REDIS_URL)
    queue = f"exit-{run_id()}"
    worker = _worker(tmp_path, queue)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(psutil.Process(worker.pid).children()) < 2:
            time.sleep(0.05)
        time.sleep(2)  # past start-up: the pool is up
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        purge_queue(REDIS_URL, f"{queue}.process")
