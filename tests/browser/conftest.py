"""A real Chromium on the real web page: Debian's ``chromium`` driven by Playwright for
Python through ``executable_path`` (Playwright's own browser downloads are never used),
against a real ``imgpipe serve`` subprocess on a free loopback port.

No Chromium (or no Playwright) is a skip on a laptop and a failure in CI (CI=true), like
every other missing service (tests/backends.py). IMGPIPE_TEST_CHROMIUM names another
binary. Screenshots are test artefacts: written under IMGPIPE_TEST_ARTIFACTS when set,
else a temporary directory, and the directory is printed at the end of the run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from backends import unavailable
from integration.conftest import ImgpipeServer, run_cli

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page

CHROMIUM_NAMES = ("chromium", "chromium-browser")
# Per test, the one place an expect() may wait: an image's processing on a loaded 2-core
# machine takes well under a second; this is headroom, not a target.
WAIT_MS = 60_000
_ARTIFACTS: list[Path] = []


def _chromium() -> str:
    named = os.environ.get("IMGPIPE_TEST_CHROMIUM")
    found = named or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if not found or not Path(found).exists():
        unavailable("Chromium", FileNotFoundError(named or " or ".join(CHROMIUM_NAMES)))
        raise AssertionError("unreachable")  # unavailable() skips or fails
    return found


# Package scope, not session: Playwright's sync API keeps an asyncio loop running on the
# main thread while it is open, and every later test that starts a loop there
# (anyio.run in tests/unit) would fail with "Already running asyncio in this thread".
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        unavailable("Playwright (pip install -e '.[test]')", exc)
        raise
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    executable = _chromium()
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        instance = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield instance
        instance.close()


@dataclass
class WebServer:
    server: ImgpipeServer
    key: str

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def client(self) -> httpx.Client:
        """An API client with the key, for arranging and checking what the page shows."""
        headers = {"Authorization": f"Bearer {self.key}"}
        return httpx.Client(base_url=self.base_url, timeout=30, headers=headers)


@pytest.fixture(scope="session")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """`imgpipe serve` with one API key (so the page must ask for it)."""
    data_dir = tmp_path_factory.mktemp("imgpipe-browser")
    upgrade = run_cli(data_dir, "db", "upgrade")
    assert upgrade.returncode == 0, f"db upgrade: {upgrade.stderr}"
    created = run_cli(data_dir, "keys", "create", "--owner", "browser")
    assert created.returncode == 0, f"keys create: {created.stderr}"
    server = ImgpipeServer(data_dir)
    server.start()
    try:
        yield WebServer(server, created.stdout.strip())
    finally:
        server.stop()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    named = os.environ.get("IMGPIPE_TEST_ARTIFACTS")
    directory = Path(named) if named else tmp_path_factory.mktemp("browser-artifacts")
    directory.mkdir(parents=True, exist_ok=True)
    _ARTIFACTS.append(directory)
    return directory


@dataclass
class Console:
    """What the page said on its console: every error fails the test, except a failed
    load of a resource whose HTTP status the test expects (Chromium logs each 4xx)."""

    errors: list[str] = field(default_factory=list)
    expected_statuses: set[int] = field(default_factory=set)

    def expect_status(self, *statuses: int) -> None:
        self.expected_statuses.update(statuses)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        text = message.text
        if any(f"status of {s} " in text for s in self.expected_statuses):
            return
        self.errors.append(f"console.error: {text} ({message.location.get('url', '')})")

    def on_page_error(self, error: Any) -> None:
        self.errors.append(f"uncaught: {error}")


@dataclass
class BrowserPage:
    page: Page
    console: Console


def _open(
    browser: Browser,
    web: WebServer,
    artifacts: Path,
    request: pytest.FixtureRequest,
    key: str | None,
) -> Iterator[BrowserPage]:
    context = browser.new_context(
        base_url=web.base_url,
        viewport={"width": 1280, "height": 900},
        accept_downloads=True,
        color_scheme="light",
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web.base_url)
    if key is not None:
        # What the key form does, before the page's first request: the key in this tab.
        context.add_init_script(f"sessionStorage.setItem('imgpipe.apiKey', {json.dumps(key)})")
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    console = Console()
    page.on("console", console.on_console)
    page.on("pageerror", console.on_page_error)
    try:
        yield BrowserPage(page, console)
        # Whatever the test left on screen is worth a look when it fails, too.
        name = re.sub(r"[^\w.-]+", "_", request.node.name)
        page.screenshot(path=artifacts / f"{name}-end.png", full_page=True)
    finally:
        context.close()
    assert console.errors == [], "\n".join(console.errors)


@pytest.fixture
def signed_in(
    browser: Browser, web: WebServer, artifacts: Path, request: pytest.FixtureRequest
) -> Iterator[BrowserPage]:
    """A tab that already holds the API key (set before the page loads)."""
    yield from _open(browser, web, artifacts, request, web.key)


@pytest.fixture
def anonymous(
    browser: Browser, web: WebServer, artifacts: Path, request: pytest.FixtureRequest
) -> Iterator[BrowserPage]:
    """A fresh tab with no key."""
    yield from _open(browser, web, artifacts, request, None)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for directory in _ARTIFACTS:
        terminalreporter.write_line(f"browser screenshots: {directory}")
