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

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
TERMINAL_STATUSES = ("done", "partial", "failed")
BUILT_IN_PROFILES = {"thumbnail": (150, 150), "medium": (800, 600), "large": (1920, 1080)}
STARTUP_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(data_dir: Path) -> dict[str, str]:
    """The process environment, minus any inherited IMGPIPE_ settings, plus ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGPIPE_")}
    env.update(
        {
            "IMGPIPE_DATABASE_URL": f"sqlite:///{data_dir / 'imgpipe.db'}",
            "IMGPIPE_STORAGE_URL": f"file://{data_dir / 'objects'}",
            "IMGPIPE_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
            # Rate limiting is not under test here; the suite polls and uploads quickly.
            "IMGPIPE_RATE_LIMIT_UPLOADS": "10000/second",
            "IMGPIPE_RATE_LIMIT_REQUESTS": "100000/second",
            "PYTHONUNBUFFERED": "1",
        }
    )
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
    """One `python -m imgpipe serve` process (in its own process group) on a data dir."""

    data_dir: Path
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def objects_dir(self) -> Path:
        return self.data_dir / "objects"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"server-{self.starts}.log"

    def log_text(self) -> str:
        """Everything the current (or last) process printed."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_text()[-chars:]

    def start(self) -> None:
        assert self.process is None, "already running"
        self.starts += 1
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "imgpipe",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                cwd=self.data_dir,
                env=server_env(self.data_dir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: workers die with it
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                pytest.fail(f"imgpipe serve exited with {code} at start:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"GET /healthz not 200 within {STARTUP_TIMEOUT_S}s:\n{self.log_tail()}")

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_GRACE_S."""
        if self.process is None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.process.wait(timeout=STOP_GRACE_S)
        self._signal_group(signal.SIGKILL)  # anything left in the group
        self.process = None

    def kill(self) -> None:
        """SIGKILL the whole process group at once: a crash, no chance to clean up."""
        if self.process is None:
            return
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=STOP_GRACE_S)
        self.process = None


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImgpipeServer]:
    """The shared server for the whole integration session."""
    instance = ImgpipeServer(tmp_path_factory.mktemp("imgpipe"))
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


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
