"""`imgpipe api --workers N`: N processes on one port, and /metrics sums all of them."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from backends import REDIS_URL, check_broker, purge_queue, run_id

from .conftest import server_env

HEALTH_REQUESTS = 40
HEALTH_COUNT = re.compile(
    r'^imgpipe_http_request_duration_seconds_count\{method="GET",route="/healthz",'
    r'status="200"\} (\S+)$',
    re.MULTILINE,
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_api_processes_share_a_port_and_report_their_metrics_together(
    tmp_path: Path,
) -> None:
    check_broker(REDIS_URL)
    queue = f"apiworkers-{run_id()}"
    env = server_env(tmp_path, {"IMGPIPE_BROKER_URL": REDIS_URL, "IMGPIPE_QUEUE_NAME": queue})
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    upgrade = [sys.executable, "-m", "imgpipe", "db", "upgrade"]
    subprocess.run(upgrade, env=env, cwd=tmp_path, check=True, capture_output=True)
    port = _free_port()
    command = [sys.executable, "-m", "imgpipe", "api", "--port", str(port), "--workers", "2"]
    log = (tmp_path / "api.log").open("wb")
    api = subprocess.Popen(
        command,
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "api.log").read_text()
            time.sleep(0.2)
        serving = {p.pid for p in psutil.Process(api.pid).children(recursive=True)}
        assert len(serving) >= 2, "expected two serving processes"

        # A connection each: the kernel spreads them over both processes.
        for _ in range(HEALTH_REQUESTS):
            assert httpx.get(f"{base}/healthz").status_code == 200
        counts = set()
        for _ in range(6):  # several scrapes, whichever process takes each
            body = httpx.get(f"{base}/metrics").text
            found = HEALTH_COUNT.search(body)
            assert found is not None, body[:2000]
            counts.add(float(found.group(1)))
        # Every scrape sees every health check of both processes (plus the one readiness
        # poll above), never one process's share.
        assert counts == {HEALTH_REQUESTS + 1.0}, counts
    finally:
        os.killpg(api.pid, signal.SIGTERM)
        try:
            api.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(api.pid, signal.SIGKILL)
            api.wait()
        log.close()
        purge_queue(REDIS_URL, f"{queue}.process")
