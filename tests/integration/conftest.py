"""End-to-end fixtures: a real `imgpipe serve` process on a free port, and HTTP helpers.

Test modules import the helpers with `from .conftest import ...`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from backends import (
    ALL_BACKENDS,
    AMQP_URL,
    EMBEDDED,
    REDIS_URL,
    BackendSpec,
    check_broker,
    postgres_database,
    purge_queue,
    run_id,
)
from s3server import AWS_TEST_ENV, running_s3_server

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
TERMINAL_STATUSES = ("done", "partial", "failed")
BUILT_IN_PROFILES = {"thumbnail": (150, 150), "medium": (800, 600), "large": (1920, 1080)}
STARTUP_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The process environment, minus any inherited IMGPIPE_ settings, plus ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMGPIPE_", "AWS_"))}
    env.update(
        {
            "IMGPIPE_DATA_DIR": str(data_dir / "imgpipe-data"),
            "IMGPIPE_LOG_FORMAT": "text",
            "IMGPIPE_DATABASE_URL": f"sqlite:///{data_dir / 'imgpipe.db'}",
            "IMGPIPE_STORAGE_URL": f"file://{data_dir / 'objects'}",
            "IMGPIPE_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
            # Rate limiting is not under test here; the suite polls and uploads quickly.
            "IMGPIPE_RATE_LIMIT_UPLOADS": "10000/second",
            "IMGPIPE_RATE_LIMIT_REQUESTS": "100000/second",
            # DELETE hides at once; the tests purge with `imgpipe storage sweep` (cli()).
            "IMGPIPE_DELETE_RETENTION_S": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def run_cli(data_dir: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `python -m imgpipe ARGS` against data_dir's settings; output captured as text."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "imgpipe", *args],
        cwd=data_dir,
        env=server_env(data_dir),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class ImgpipeServer:
    """imgpipe on a data dir: one `serve` process (embedded), or `api` + `worker` processes
    on real engines (scale-out). Each process has its own process group, so stopping or
    killing it also reaches its children (Celery's pool, libvips threads)."""

    data_dir: Path
    backend: BackendSpec = EMBEDDED
    settings: dict[str, str] = field(default_factory=dict)
    list_objects: Callable[[], list[str]] | None = None
    port: int = field(default_factory=_free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    starts: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def objects_dir(self) -> Path:
        return self.data_dir / "objects"

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The process that serves HTTP."""
        return self.processes.get("http")

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"server-{self.starts}.log"

    def log_text(self) -> str:
        """Everything the current (or last) HTTP process printed."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"

    def log_tail(self, chars: int = 4000) -> str:
        tails = [self.log_text()[-chars:]]
        worker_log = self.data_dir / f"worker-{self.starts}.log"
        if worker_log.exists():
            tails.append("--- worker ---\n" + worker_log.read_text(errors="replace")[-chars:])
        return "\n".join(tails)

    def stored_keys(self) -> list[str]:
        """Every object key in the store, whichever backend holds them."""
        if self.list_objects is not None:
            return self.list_objects()
        return [
            p.relative_to(self.objects_dir).as_posix()
            for p in self.objects_dir.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        ]

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `imgpipe ARGS` with this server's settings (the same database and stores)."""
        return subprocess.run(
            self._imgpipe(*args),
            cwd=self.data_dir,
            env=server_env(self.data_dir, self.settings),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _imgpipe(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "imgpipe", *args]

    def _spawn(self, role: str, args: list[str], log_path: Path) -> None:
        with log_path.open("wb") as log:
            self.processes[role] = subprocess.Popen(
                self._imgpipe(*args),
                cwd=self.data_dir,
                env=server_env(self.data_dir, self.settings),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self) -> None:
        assert not self.processes, "already running"
        self.starts += 1
        self.data_dir.mkdir(parents=True, exist_ok=True)
        listen = ["--host", "127.0.0.1", "--port", str(self.port)]
        if self.backend.embedded:
            self._spawn("http", ["serve", *listen], self.log_path)
        else:
            migrated = subprocess.run(
                self._imgpipe("db", "upgrade"),
                cwd=self.data_dir,
                env=server_env(self.data_dir, self.settings),
                capture_output=True,
                timeout=60,
                check=False,
            )
            assert migrated.returncode == 0, migrated.stderr.decode(errors="replace")
            self._spawn("http", ["api", *listen], self.log_path)
            worker_log = self.data_dir / f"worker-{self.starts}.log"
            self._spawn("worker", ["worker", "--concurrency", "2"], worker_log)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            for role, process in self.processes.items():
                if process.poll() is not None:
                    code = process.returncode
                    self.stop()
                    pytest.fail(f"imgpipe {role} exited with {code} at start:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"GET /healthz not 200 within {STARTUP_TIMEOUT_S}s:\n{self.log_tail()}")

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_GRACE_S."""
        for process in self.processes.values():
            self._signal_group(process, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self._signal_group(process, signal.SIGKILL)
                process.wait(timeout=STOP_GRACE_S)
            self._signal_group(process, signal.SIGKILL)  # anything left in the group
        self.processes.clear()

    def kill(self) -> None:
        """SIGKILL every process group at once: a crash, no chance to clean up."""
        for process in self.processes.values():
            self._signal_group(process, signal.SIGKILL)
        for process in self.processes.values():
            process.wait(timeout=STOP_GRACE_S)
        self.processes.clear()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """One S3 API server (moto, on loopback) for the whole run, started on first use."""
    with running_s3_server() as endpoint_url:
        yield endpoint_url


def _s3_settings(endpoint: str) -> tuple[dict[str, str], Callable[[], list[str]]]:
    """A bucket of this run's own, the settings that point imgpipe at it, and a lister."""
    import boto3
    from botocore.config import Config

    bucket = f"imgpipe-test-{run_id()}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=AWS_TEST_ENV["AWS_DEFAULT_REGION"],
        config=Config(s3={"addressing_style": "path"}),
    )
    client.create_bucket(Bucket=bucket)

    def list_objects() -> list[str]:
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys += [item["Key"].removeprefix("run/") for item in page.get("Contents", [])]
        return keys

    settings = {
        "IMGPIPE_STORAGE_URL": f"s3://{bucket}/run",
        "IMGPIPE_S3_ENDPOINT_URL": endpoint,
        **AWS_TEST_ENV,
    }
    return settings, list_objects


def backend_settings(
    spec: BackendSpec, stack: contextlib.ExitStack, request: pytest.FixtureRequest
) -> tuple[dict[str, str], Callable[[], list[str]] | None]:
    """Settings (and an object lister) for one backend; resources close with the stack."""
    settings: dict[str, str] = {}
    lister = None
    if spec.database == "postgres":
        settings["IMGPIPE_DATABASE_URL"] = stack.enter_context(postgres_database())
    if spec.storage == "s3":
        s3_settings, lister = _s3_settings(request.getfixturevalue("s3_endpoint"))
        settings.update(s3_settings)
    if spec.broker is not None:
        url = REDIS_URL if spec.broker == "redis" else AMQP_URL
        check_broker(url)
        queue = f"imgpipe-test-{run_id()}"
        settings.update({"IMGPIPE_BROKER_URL": url, "IMGPIPE_QUEUE_NAME": queue})
        stack.callback(purge_queue, url, f"{queue}.process")
    return settings, lister


@pytest.fixture(scope="session", params=ALL_BACKENDS, ids=lambda spec: spec.name)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ImgpipeServer]:
    """The shared server, once per backend: every end-to-end test runs on each."""
    spec: BackendSpec = request.param
    with contextlib.ExitStack() as stack:
        settings, lister = backend_settings(spec, stack, request)
        instance = ImgpipeServer(tmp_path_factory.mktemp(spec.name), spec, settings, lister)
        instance.start()
        stack.callback(instance.stop)
        yield instance


@pytest.fixture(scope="session")
def base_url(server: ImgpipeServer) -> str:
    return server.base_url


@pytest.fixture(scope="session")
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        yield http


@pytest.fixture
def spawn_server(
    tmp_path: Path,
) -> Iterator[Callable[[Path | None], ImgpipeServer]]:
    """Start private servers (for restart tests); every one is stopped at teardown."""
    started: list[ImgpipeServer] = []

    def spawn(data_dir: Path | None = None) -> ImgpipeServer:
        instance = ImgpipeServer(data_dir or tmp_path / "data")
        instance.start()
        started.append(instance)
        return instance

    yield spawn
    for instance in started:
        instance.stop()


# --- HTTP helpers -------------------------------------------------------------------------


def upload(
    client: httpx.Client,
    data: bytes,
    filename: str = "upload.bin",
    content_type: str = "application/octet-stream",
    profiles: str | None = None,
) -> httpx.Response:
    form = {"profiles": profiles} if profiles is not None else None
    return client.post("/v1/images", files={"file": (filename, data, content_type)}, data=form)


def upload_ok(
    client: httpx.Client, data: bytes, filename: str = "upload.bin", **kw: Any
) -> dict[str, Any]:
    """Upload and assert 202; return the image resource."""
    response = upload(client, data, filename, **kw)
    assert response.status_code == 202, f"upload {filename}: {response.status_code} {response.text}"
    resource: dict[str, Any] = response.json()
    return resource


def wait_done(client: httpx.Client, image_id: str, timeout: float = 60) -> dict[str, Any]:
    """Poll GET /v1/images/{id} until its status is done, partial or failed."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    resource: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"/v1/images/{image_id}")
        assert response.status_code == 200, (
            f"GET image {image_id}: {response.status_code} {response.text}"
        )
        resource = response.json()
        if resource["status"] in TERMINAL_STATUSES:
            return resource
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    raise AssertionError(f"image {image_id} not finished after {timeout}s: {resource}")


def upload_and_wait(
    client: httpx.Client, data: bytes, filename: str = "upload.bin", **kw: Any
) -> dict[str, Any]:
    return wait_done(client, upload_ok(client, data, filename, **kw)["id"])


def wait_for_key(server: ImgpipeServer, key: str, timeout: float = 60) -> None:
    """Poll the store until it holds ``key``: for what the worker stores after an image is
    done (the large render source)."""
    deadline = time.monotonic() + timeout
    while key not in server.stored_keys():
        assert time.monotonic() < deadline, f"{key} not stored after {timeout}s"
        time.sleep(0.2)


def assert_done(resource: dict[str, Any], profiles: set[str] | None = None) -> None:
    """Status done and every expected variant done (reporting each variant's error if not)."""
    expected = set(BUILT_IN_PROFILES) if profiles is None else profiles
    errors = {
        name: (variant.get("status"), variant.get("error"))
        for name, variant in resource["variants"].items()
        if variant.get("status") != "done"
    }
    assert resource["status"] == "done", f"status {resource['status']}, variants not done: {errors}"
    assert set(resource["variants"]) == expected


def get_variant(client: httpx.Client, image_id: str, name: str) -> httpx.Response:
    response = client.get(f"/v1/images/{image_id}/variants/{name}")
    assert response.status_code == 200, f"variant {name}: {response.status_code} {response.text}"
    return response


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """An RFC 9457 problem with the given HTTP status and imgpipe code."""
    assert response.status_code == status, (
        f"expected {status} {code}, got {response.status_code}: {response.text[:500]}"
    )
    content_type = response.headers.get("content-type", "")
    assert content_type.startswith("application/problem+json"), content_type
    problem: dict[str, Any] = response.json()
    assert problem.get("code") == code, problem
    assert problem.get("status") == status, problem
    for key in ("type", "title", "detail"):
        assert isinstance(problem.get(key), str) and problem[key], f"problem lacks {key}: {problem}"
    return problem


def expected_fit(width: int, height: int, box: tuple[int, int]) -> tuple[int, int]:
    """Fit inside box, keeping aspect, never upscaling."""
    scale = min(box[0] / width, box[1] / height, 1.0)
    return round(width * scale), round(height * scale)


def expected_cover(width: int, height: int, box: tuple[int, int]) -> tuple[int, int]:
    """Cover crop: exactly the box when the source is at least that big, else no upscaling."""
    return min(width, box[0]), min(height, box[1])


def expected_size(profile: str, width: int, height: int) -> tuple[int, int]:
    box = BUILT_IN_PROFILES[profile]
    if profile == "thumbnail":
        return expected_cover(width, height, box)
    return expected_fit(width, height, box)


def assert_size(actual: tuple[int, int], expected: tuple[int, int], what: str) -> None:
    """Equal, allowing one pixel of rounding on each side."""
    assert abs(actual[0] - expected[0]) <= 1 and abs(actual[1] - expected[1]) <= 1, (
        f"{what}: {actual[0]}x{actual[1]}, expected {expected[0]}x{expected[1]}"
    )
