"""Start and stop imgpipe processes for benchmarks: `serve`, or `api` + `worker`s.

Everything listens on 127.0.0.1, runs in its own process group, and is stopped (SIGTERM,
then SIGKILL) when the `with` block ends. ``Stack.cpu_seconds`` and ``busy_cores_seconds``
measure what a server spent, and what the whole machine did meanwhile, so a figure taken
on a shared machine can be told apart from other people's load.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def imgpipe_env(data_dir: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGPIPE_")}
    env.update(
        {
            "IMGPIPE_DATA_DIR": str(data_dir / "data"),
            "IMGPIPE_DATABASE_URL": f"sqlite:///{data_dir / 'imgpipe.db'}",
            "IMGPIPE_STORAGE_URL": f"file://{data_dir / 'objects'}",
            "IMGPIPE_LOG_LEVEL": "WARNING",
            "IMGPIPE_LOG_FORMAT": "text",
            # The benches measure the pipeline, not the per-key limits they would trip.
            "IMGPIPE_RATE_LIMIT_UPLOADS": "100000/second",
            "IMGPIPE_RATE_LIMIT_REQUESTS": "100000/second",
        }
    )
    env.update({f"IMGPIPE_{k.upper()}": v for k, v in settings.items()})
    return env


@dataclass
class Stack:
    data_dir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self, *args: str, log_name: str, extra_env: dict[str, str] | None = None) -> int:
        """Start `imgpipe ARGS...`; returns its pid."""
        log = (self.data_dir / f"{log_name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "imgpipe", *args],
            env={**self.env, **(extra_env or {})},
            cwd=self.data_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.processes.append(process)
        return process.pid

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "imgpipe", "db", "upgrade"],
            env=self.env,
            cwd=self.data_dir,
            check=True,
            capture_output=True,
        )

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise SystemExit(f"imgpipe did not become healthy; logs in {self.data_dir}")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of every process started so far and their children."""
        return sum(tree_cpu_seconds(process.pid) for process in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextlib.contextmanager
def running(data_dir: Path, env: dict[str, str]) -> Iterator[Stack]:
    data_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(data_dir, env)
    try:
        yield stack
    finally:
        stack.stop()


def unique_jpeg(jpeg: bytes, n: int) -> bytes:
    """The same JPEG with a COM segment carrying ``n``: a new sha256, the same pixels."""
    comment = f"imgpipe-bench-{n}".encode()
    return jpeg[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + jpeg[2:]


def wait_all_done(
    client: httpx.Client, image_ids: list[str], timeout: float
) -> dict[str, dict[str, object]]:
    """Poll until every image is terminal; returns the final resources."""
    pending = set(image_ids)
    final: dict[str, dict[str, object]] = {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for image_id in list(pending):
            resource = client.get(f"/v1/images/{image_id}").json()
            if resource["status"] in ("done", "partial", "failed"):
                final[image_id] = resource
                pending.discard(image_id)
        time.sleep(0.2)
    if pending:
        raise SystemExit(f"{len(pending)} images unfinished after {timeout} s")
    return final


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its live descendants (psutil; 0.0 without it)."""
    try:
        import psutil
    except ImportError:
        return 0.0
    total = 0.0
    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for member in members:
        with contextlib.suppress(psutil.Error):
            times = member.cpu_times()
            total += times.user + times.system
    return total


def busy_cores_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat; Linux)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


POSTGRES_ADMIN = os.environ.get("IMGPIPE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1/test")


@contextlib.contextmanager
def postgres_database(admin_url: str = POSTGRES_ADMIN) -> Iterator[str]:
    """A fresh PostgreSQL database for one run; yields its SQLAlchemy URL, then drops it."""
    import psycopg

    name = f"imgpipe_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
