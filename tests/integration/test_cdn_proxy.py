"""The CDN stand-in (deploy/cdn, compose.yaml's `cdn`) in front of a real `imgpipe serve`.

Debian's nginx runs with the repository's own configuration on a free loopback port (the
package's default site would want port 80). The requests that reach imgpipe are counted
in its /metrics: a repeated signed variant URL or render must never get there.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backends import unavailable

from . import images
from .conftest import ImgpipeServer, upload_and_wait

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "cdn" / "nginx.conf.template"
VARIANT_ROUTE = "/v1/images/{image_id}/variants/{name}"
RENDER_ROUTE = "/v1/render/{name}"
START_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:  # .ci/run installs Debian's package; CI=true makes this a failure
        unavailable("nginx (apt-get install nginx-light)", FileNotFoundError("nginx"))
    assert found is not None
    return found


def reaching_imgpipe(server: ImgpipeServer, route: str) -> int:
    """How many GETs of ``route`` imgpipe itself has answered, any status."""
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    pattern = (
        r'^imgpipe_http_request_duration_seconds_count\{method="GET",route="'
        + re.escape(route)
        + r'",status="\d+"\} ([0-9.e+]+)$'
    )
    return int(sum(float(m) for m in re.findall(pattern, text, re.MULTILINE)))


@pytest.fixture
def cdn(tmp_path: Path) -> Iterator[tuple[ImgpipeServer, str]]:
    """imgpipe serve behind nginx; yields the server and the proxy's base URL."""
    nginx = _nginx_binary()
    listen = _free_port()
    cdn_url = f"http://127.0.0.1:{listen}"
    server = ImgpipeServer(
        tmp_path / "imgpipe",
        settings={"IMGPIPE_PUBLIC_BASE_URL": cdn_url, "IMGPIPE_PUBLIC_URL_MODE": "api"},
    )
    server.start()
    run_dir = tmp_path / "nginx"
    run_dir.mkdir()
    config = TEMPLATE.read_text()
    for name, value in {
        "LISTEN": f"127.0.0.1:{listen}",
        "UPSTREAM": f"127.0.0.1:{server.port}",
        "CACHE_DIR": str(run_dir / "cache"),
        "RUN_DIR": str(run_dir),
    }.items():
        config = config.replace("${" + name + "}", value)
    assert "${" not in config
    if os.geteuid() == 0:
        # nginx started by root hands requests to workers running as `nobody`, who cannot
        # enter pytest's private temp directory; the test's own nginx keeps its user.
        config = "user root;\n" + config
    (run_dir / "nginx.conf").write_text(config)
    process = subprocess.Popen(
        [nginx, "-c", str(run_dir / "nginx.conf"), "-e", str(run_dir / "error.log")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(
                    f"nginx exited: {process.stderr.read().decode() if process.stderr else ''}"
                )
            try:
                httpx.get(f"{cdn_url}/healthz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("nginx did not answer")
        yield server, cdn_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        server.stop()


def test_repeated_signed_variant_and_render_requests_never_reach_imgpipe(
    cdn: tuple[ImgpipeServer, str],
) -> None:
    server, cdn_url = cdn
    made = server.cli("keys", "create", "--owner", "cdn-test")
    assert made.returncode == 0, made.stderr
    key = {"Authorization": f"Bearer {made.stdout.strip()}"}
    with httpx.Client(base_url=server.base_url, timeout=60, headers=key) as api:
        resource = upload_and_wait(api, images.noisy(1200, 800, seed=1450), "cdn.jpg")
    public_url = resource["variants"]["medium"]["public_url"]
    assert public_url.startswith(cdn_url)

    with httpx.Client(timeout=30) as browser:
        # A signed variant URL: the first request fills the cache, the second is a hit.
        before = reaching_imgpipe(server, VARIANT_ROUTE)
        first = browser.get(public_url)
        assert first.status_code == 200, first.text
        assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert reaching_imgpipe(server, VARIANT_ROUTE) == before + 1
        second = browser.get(public_url)
        assert second.headers["x-cache-status"] == "HIT"
        assert second.content == first.content
        assert reaching_imgpipe(server, VARIANT_ROUTE) == before + 1

        # A format=auto render: Vary: Accept, normalised to a class by the proxy.
        signed = server.cli("sign", f"/v1/render/{resource['id']}?w=200").stdout.strip()
        chrome = {"Accept": "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"}
        firefox = {"Accept": "image/avif,image/webp,*/*"}
        before = reaching_imgpipe(server, RENDER_ROUTE)
        rendered = browser.get(cdn_url + signed, headers=chrome)
        assert rendered.status_code == 200, rendered.text
        assert rendered.headers["content-type"] == "image/avif"
        assert rendered.headers["vary"] == "Accept"
        again = browser.get(cdn_url + signed, headers=firefox)  # another browser, same class
        assert again.headers["x-cache-status"] == "HIT"
        assert again.content == rendered.content
        assert reaching_imgpipe(server, RENDER_ROUTE) == before + 1
        # A browser of another class gets its own entry, in its own format.
        legacy = browser.get(cdn_url + signed, headers={"Accept": "image/jpeg,*/*"})
        assert legacy.headers["content-type"] == "image/jpeg"
        assert reaching_imgpipe(server, RENDER_ROUTE) == before + 2

        # With a key: the owner's answer, never stored nor served by the shared cache.
        keyed_url = cdn_url + resource["variants"]["medium"]["url"]
        before = reaching_imgpipe(server, VARIANT_ROUTE)
        for _ in range(2):
            keyed = browser.get(keyed_url, headers=key)
            assert keyed.status_code == 200
            assert keyed.headers["cache-control"].startswith("private")
        assert reaching_imgpipe(server, VARIANT_ROUTE) == before + 2
        anonymous = browser.get(keyed_url)
        assert anonymous.status_code == 401  # nothing leaked from the cache
