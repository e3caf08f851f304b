"""Stacks of real imgpipe processes for the crash tests, and the helpers they share.

``Stack`` runs one `imgpipe api` and any number of named `imgpipe worker` processes on one
set of settings. Every process starts in a session of its own, so a SIGKILL of its process
group also reaches its Celery pool; ``stop()`` ends them all (SIGTERM, then SIGKILL) and is
safe to call twice. ``RedisServer`` is a redis-server of the test's own on a free loopback
port, killed and restarted at will. ``reference_variants`` is the clean run: the engine in
this process, the same functions the worker calls, on the same bytes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from backends import postgres_database, run_id, unavailable
from integration.conftest import TERMINAL_STATUSES, server_env, upload_ok

STARTUP_TIMEOUT_S = 45.0
STOP_GRACE_S = 10.0
LOG_TAIL_CHARS = 3000

# Short job timings, so that a crash is noticed in seconds (docs/reliability.md, part B).
FAST_JOBS = {
    "IMGPIPE_MAX_ATTEMPTS": "5",
    "IMGPIPE_LEASE_S": "3",
    "IMGPIPE_RECONCILE_S": "0.5",
    "IMGPIPE_REQUEUE_AFTER_S": "3",
    "IMGPIPE_RETRY_BASE_S": "0.05",
    "IMGPIPE_RETRY_MAX_S": "1",
    "IMGPIPE_WEBHOOK_SWEEP_S": "1",
    "IMGPIPE_PROCESS_TIMEOUT_S": "20",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _end(process: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace_s``, then reap."""
    if process.poll() is None:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=grace_s)
    _signal_group(process.pid, signal.SIGKILL)  # anything left in the group (pool children)


@dataclass
class Stack:
    """`imgpipe api` + named `imgpipe worker` processes over one data dir and settings."""

    data_dir: Path
    settings: dict[str, str]
    port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)
    starts: Counter[str] = field(default_factory=Counter)
    # Workers that exited by themselves and were started again by ``supervise``: role and
    # exit code, in order.
    exits: list[tuple[str, int]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def objects_dir(self) -> Path:
        return self.data_dir / "objects"

    def env(self) -> dict[str, str]:
        return server_env(self.data_dir, self.settings)

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`imgpipe ARGS` on this stack's settings; output captured as text."""
        return subprocess.run(
            [sys.executable, "-m", "imgpipe", *args],
            cwd=self.data_dir,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def migrate(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        done = self.cli("db", "upgrade")
        assert done.returncode == 0, f"imgpipe db upgrade: {done.stderr}"

    def log_path(self, role: str) -> Path:
        return self.data_dir / f"{role}.log"

    def spawn(self, role: str, command: list[str]) -> subprocess.Popen[bytes]:
        """Start ``command`` as ``role`` in a session of its own, appending to its log."""
        with self.lock:
            return self._spawn(role, command)

    def _spawn(self, role: str, command: list[str]) -> subprocess.Popen[bytes]:
        old = self.processes.get(role)
        assert old is None or old.poll() is not None, f"{role} is running"
        self.starts[role] += 1
        self.commands[role] = command
        with self.log_path(role).open("ab") as log:
            log.write(f"\n=== start {self.starts[role]} of {role} ===\n".encode())
            log.flush()
            process = subprocess.Popen(
                command,
                cwd=self.data_dir,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[role] = process
        return process

    def start_api(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        listen = ["--host", "127.0.0.1", "--port", str(self.port)]
        self.spawn("api", [sys.executable, "-m", "imgpipe", "api", *listen])
        self._wait(
            "GET /healthz",
            lambda: httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200,
            roles=["api"],
        )

    def start_worker(self, role: str, concurrency: int = 2, script: Path | None = None) -> None:
        """`imgpipe worker` (or ``script worker``, a wrapper around the same CLI)."""
        entry = [str(script)] if script is not None else ["-m", "imgpipe"]
        args = ["worker", "--concurrency", str(concurrency)]
        self.spawn(role, [sys.executable, *entry, *args])

    def restart(self, role: str) -> None:
        """As a supervisor would: the same command again, at once."""
        self.spawn(role, self.commands[role])

    def crash(self, role: str) -> None:
        """SIGKILL the whole process group of ``role`` and start it again at once."""
        with self.lock:
            self.kill(role)
            self.restart(role)

    @contextlib.contextmanager
    def supervise(self, every_s: float = 0.2) -> Iterator[None]:
        """Meanwhile, start again any worker that exits by itself (as systemd's
        Restart=always would), recording its exit code in ``exits``."""
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(every_s):
                with self.lock:
                    for role in self.workers():
                        code = self.processes[role].poll()
                        if code is not None:
                            _signal_group(self.processes[role].pid, signal.SIGKILL)
                            self.exits.append((role, code))
                            self.restart(role)

        thread = threading.Thread(target=watch, name="supervisor", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def workers(self) -> list[str]:
        return [role for role in self.processes if role != "api"]

    def pool_children(self, role: str) -> list[psutil.Process]:
        """The live Celery pool processes of worker ``role`` (children of its main process)."""
        process = self.processes.get(role)
        if process is None or process.poll() is not None:
            return []
        try:
            children = psutil.Process(process.pid).children()
        except psutil.NoSuchProcess:
            return []
        live = []
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.status() != psutil.STATUS_ZOMBIE:
                    live.append(child)
        return live

    def wait_workers_ready(self, concurrency: int = 2) -> None:
        """Every worker has its pool up and has said it is ready."""
        roles = self.workers()

        def ready() -> bool:
            return all(
                len(self.pool_children(role)) >= concurrency
                and " ready." in self.log_path(role).read_text(errors="replace")
                for role in roles
            )

        self._wait("workers ready", ready, roles=roles)

    def _wait(self, what: str, check: Callable[[], bool], roles: Sequence[str]) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            for role in roles:
                code = self.processes[role].poll()
                if code is not None:
                    self.stop()
                    pytest.fail(f"imgpipe {role} exited with {code} at start:\n{self.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if check():
                    return
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"{what}: not within {STARTUP_TIMEOUT_S}s\n{self.log_tail()}")

    def kill(self, role: str) -> None:
        """SIGKILL the whole process group of ``role``: a crash, no cleanup."""
        process = self.processes[role]
        _signal_group(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_GRACE_S)

    def stop(self) -> None:
        """Every process this stack started, and their children: SIGTERM, then SIGKILL."""
        for process in self.processes.values():
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            _end(process)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of one SQL query on the stack's PostgreSQL database (for figures the API
        does not show, such as each attempt's claim time)."""
        import psycopg

        url = self.settings["IMGPIPE_DATABASE_URL"].replace(
            "postgresql+psycopg://", "postgresql://"
        )
        with psycopg.connect(url, connect_timeout=5) as connection:
            return list(connection.execute(sql).fetchall())

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        parts = []
        for role in self.processes:
            with contextlib.suppress(OSError):
                text = self.log_path(role).read_text(errors="replace")
                parts.append(f"--- {role} ---\n{text[-chars:]}")
        return "\n".join(parts)


@contextlib.contextmanager
def running_stack(data_dir: Path, settings: dict[str, str]) -> Iterator[Stack]:
    """A migrated Stack on a PostgreSQL database of its own; everything ends on exit."""
    with postgres_database() as database_url:
        stack = Stack(data_dir, {"IMGPIPE_DATABASE_URL": database_url, **settings})
        try:
            stack.migrate()
            yield stack
        finally:
            stack.stop()


def queue_name() -> str:
    return f"imgpipe-fault-{run_id()}"


# --- a redis-server of the test's own ----------------------------------------------------


class RedisServer:
    """redis-server on 127.0.0.1:<free port>, keeping nothing on disk (a restart forgets
    every message), in a session of its own."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server", FileNotFoundError("redis-server is not on PATH"))
            raise AssertionError("unreachable")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.workdir),
        ]
        with (self.workdir / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.workdir / "redis.log").read_text()
            with contextlib.suppress(Exception):
                if self.client().ping():
                    return
            time.sleep(0.05)
        raise AssertionError(f"redis-server on port {self.port} not answering within 10 s")

    def kill(self) -> None:
        """SIGKILL: every queued message is gone."""
        assert self.process is not None
        _signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_GRACE_S)

    def stop(self) -> None:
        if self.process is not None:
            _end(self.process, grace_s=5)

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def queued(self, queue: str) -> int:
        """Messages waiting in a kombu queue (every priority list) plus those delivered
        to a worker and not yet acknowledged."""
        client = self.client()
        waiting = sum(int(client.llen(key)) for key in client.scan_iter(match=f"{queue}*"))
        return waiting + int(client.hlen("unacked"))


# --- images, uploads, status -------------------------------------------------------------


def noise_png(seed: int, size: tuple[int, int] = (64, 48), text: str | None = None) -> bytes:
    """A small PNG of seeded noise: distinct bytes per seed; ``text`` goes in a tEXt chunk."""
    import io

    import numpy as np
    from PIL import Image, PngImagePlugin

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    info = PngImagePlugin.PngInfo()
    if text is not None:
        info.add_text("Comment", text)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "PNG", pnginfo=info)
    return out.getvalue()


def upload_all(
    base_url: str,
    inputs: Sequence[bytes],
    profiles: str | None = None,
    threads: int = 8,
    prefix: str = "img",
) -> list[str]:
    """Every input once (each must be accepted: 202), ``threads`` requests in flight; the
    image ids in input order."""
    clients = [httpx.Client(base_url=base_url, timeout=60) for _ in range(threads)]
    try:
        with ThreadPoolExecutor(threads) as pool:
            futures = [
                pool.submit(
                    upload_ok,
                    clients[n % threads],
                    data,
                    f"{prefix}-{n}.png",
                    content_type="image/png",
                    profiles=profiles,
                )
                for n, data in enumerate(inputs)
            ]
            return [future.result()["id"] for future in futures]
    finally:
        for client in clients:
            client.close()


def statuses(client: httpx.Client) -> dict[str, str]:
    """Every image of the (single-user) owner: id -> status, through the list endpoint."""
    found: dict[str, str] = {}
    cursor = ""
    while True:
        response = client.get("/v1/images", params={"limit": 200, "cursor": cursor})
        assert response.status_code == 200, response.text
        page = response.json()
        found.update({item["id"]: item["status"] for item in page["items"]})
        cursor = page.get("next_cursor") or ""
        if not cursor:
            return found


def wait_all_terminal(
    client: httpx.Client, image_ids: Sequence[str], timeout: float, every: float = 0.5
) -> tuple[dict[str, str], float]:
    """Poll until every image is done, partial or failed, or ``timeout`` passes; the last
    statuses seen and the seconds waited (the caller asserts on what is left)."""
    started = time.monotonic()
    seen: dict[str, str] = {}
    while True:
        listed = statuses(client)
        seen = {image_id: listed.get(image_id, "<missing>") for image_id in image_ids}
        waited = time.monotonic() - started
        if all(status in TERMINAL_STATUSES for status in seen.values()) or waited > timeout:
            return seen, waited
        time.sleep(every)


def fetch_images(base_url: str, image_ids: Sequence[str], threads: int = 8) -> list[dict[str, Any]]:
    """GET /v1/images/{id} for each id, in order."""
    with httpx.Client(base_url=base_url, timeout=60) as client, ThreadPoolExecutor(threads) as pool:

        def get(image_id: str) -> dict[str, Any]:
            response = client.get(f"/v1/images/{image_id}")
            assert response.status_code == 200, f"{image_id}: {response.text}"
            resource: dict[str, Any] = response.json()
            return resource

        return list(pool.map(get, image_ids))


def fetch_variants(
    base_url: str, image_ids: Sequence[str], names: Sequence[str], threads: int = 8
) -> list[dict[str, bytes]]:
    """The bytes of each named variant of each image, in order."""
    with httpx.Client(base_url=base_url, timeout=60) as client, ThreadPoolExecutor(threads) as pool:

        def get(image_id: str) -> dict[str, bytes]:
            out = {}
            for name in names:
                response = client.get(f"/v1/images/{image_id}/variants/{name}")
                assert response.status_code == 200, f"{image_id}/{name}: {response.text}"
                out[name] = response.content
            return out

        return list(pool.map(get, image_ids))


def parse_time(value: str) -> float:
    """An API timestamp as Unix seconds."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def reference_variants(inputs: Sequence[bytes], profile_names: list[str]) -> list[dict[str, bytes]]:
    """The clean run: each input through the engine in this process, exactly as a worker
    renders it (probe, then render_variants on the stored original), no crash anywhere."""
    from imgpipe import engine
    from imgpipe.config import Settings
    from imgpipe.domain.profiles import ProfileSet
    from imgpipe.engine.pipeline import Rendered, render_variants
    from imgpipe.engine.probe import probe

    engine.configure()
    specs = [spec for p in ProfileSet.builtin().select(profile_names) for spec in p.variants()]
    limits = Settings().limits
    out: list[dict[str, bytes]] = []
    with tempfile.TemporaryDirectory(prefix="imgpipe-reference-") as scratch:
        path = Path(scratch) / "original"
        for data in inputs:
            path.write_bytes(data)
            result = render_variants(path, probe(path, limits), specs)
            rendered: dict[str, bytes] = {}
            for name, outcome in result.outcomes.items():
                assert isinstance(outcome, Rendered), f"clean run failed: {outcome}"
                rendered[name] = outcome.data
            out.append(rendered)
    return out


# --- figures -----------------------------------------------------------------------------

FIGURES: list[str] = []


def report(test: str, figures: dict[str, object]) -> str:
    """Print one line of figures (shown with `pytest -s`) and keep it for the summary that
    tests/faults/conftest.py prints at the end of the run."""
    line = f"FIGURES {test}: " + ", ".join(f"{key} {value}" for key, value in figures.items())
    print(f"\n{line}", flush=True)
    FIGURES.append(line)
    return line
