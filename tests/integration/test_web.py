"""GET /: the web page. Three static files that call the same /v1 API as any client: the
page itself needs no key and counts against no rate limit, serves nothing but its own
files, and forbids inline script with its Content-Security-Policy.

The page does not depend on the backends, so these tests run one private embedded server,
never the shared per-backend one. It holds an API key (auth is required) and allows two
/v1 requests an hour, so a key check or a rate limit on the page would show.
"""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from .conftest import ImgpipeServer, assert_problem, run_cli

REQUESTS_PER_HOUR = 2


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ImgpipeServer, str]]:
    data_dir = tmp_path_factory.mktemp("imgpipe-web")
    upgrade = run_cli(data_dir, "db", "upgrade")
    assert upgrade.returncode == 0, f"db upgrade: {upgrade.stderr}"
    created = run_cli(data_dir, "keys", "create", "--owner", "web")
    assert created.returncode == 0, f"keys create: {created.stderr}"
    key = created.stdout.strip()
    settings = {"IMGPIPE_RATE_LIMIT_REQUESTS": f"{REQUESTS_PER_HOUR}/hour"}
    instance = ImgpipeServer(data_dir, settings=settings)
    instance.start()
    try:
        yield instance, key
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def page(web_server: tuple[ImgpipeServer, str]) -> Iterator[httpx.Client]:
    """A client without any key, like a browser opening the page."""
    with httpx.Client(base_url=web_server[0].base_url, timeout=30) as client:
        yield client


class _Page(HTMLParser):
    """What the HTML asks the browser to load or run."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.stylesheets: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        handlers = [name for name, _ in attrs if name.startswith("on")]
        self.inline += [f"<{tag} {name}=...>" for name in handlers]
        if "style" in named:
            self.inline.append(f"<{tag} style=...>")
        if tag == "style":
            self.inline.append("<style>")
        if tag == "script":
            self._in_script = True
            if named.get("src"):
                self.scripts.append(str(named["src"]))
            else:
                self.inline.append("<script> without src")
        if tag == "link" and named.get("rel") == "stylesheet":
            self.stylesheets.append(str(named["href"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("<script> with content")


def _parse(html: str) -> _Page:
    parsed = _Page()
    parsed.feed(html)
    return parsed


def _csp(response: httpx.Response) -> dict[str, list[str]]:
    header = response.headers.get("content-security-policy")
    assert header, f"{response.url} has no Content-Security-Policy"
    directives: dict[str, list[str]] = {}
    for directive in header.split(";"):
        name, *values = directive.split()
        directives[name] = values
    return directives


def _assert_csp_forbids_inline_script(response: httpx.Response) -> None:
    csp = _csp(response)
    assert "default-src" in csp, csp
    assert csp.get("script-src") == ["'self'"], csp
    assert csp.get("style-src") == ["'self'"], csp
    assert {"'self'", "blob:", "data:"} <= set(csp.get("img-src", [])), csp
    assert response.headers.get("x-content-type-options") == "nosniff"


def _asset_urls(page: httpx.Client) -> tuple[str, str]:
    """The page's main script and its stylesheet (review.js is the admin's, below)."""
    parsed = _parse(page.get("/").text)
    names = [url.split("?")[0] for url in parsed.scripts]
    assert names == ["/static/app.js", "/static/review.js"], parsed.__dict__
    assert len(parsed.stylesheets) == 1, parsed.__dict__
    return parsed.scripts[0], parsed.stylesheets[0]


def test_the_review_script_calls_only_routes_the_api_has(page: httpx.Client) -> None:
    review = _parse(page.get("/").text).scripts[1]
    response = page.get(review)
    assert response.status_code == 200 and "immutable" in response.headers["cache-control"]
    assert response.headers["content-type"].startswith("text/javascript")
    schema: dict[str, Any] = page.get("/openapi.json").json()
    routes = {_normalise(path): ops for path, ops in schema["paths"].items()}
    called = {_normalise(p) for p in re.findall(r"[`\"'](/v1/[^`\"'?]*)", response.text)}
    assert called == {"/v1/me", "/v1/admin/moderation", "/v1/admin/images/{}/moderation"}, called
    assert "get" in routes["/v1/admin/moderation"]
    assert "post" in routes["/v1/admin/images/{}/moderation"]
    assert "innerHTML" not in response.text  # server text only ever as textContent


def _normalise(path: str) -> str:
    """/v1/images/{image_id} and /v1/images/${encodeURIComponent(id)} both -> /v1/images/{}"""
    return re.sub(r"\$?\{[^}]*\}", "{}", path)


def test_page_is_html_with_a_csp_and_no_inline_script(page: httpx.Client) -> None:
    response = page.get("/")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    _assert_csp_forbids_inline_script(response)
    assert response.headers.get("cache-control") == "no-cache"
    parsed = _parse(response.text)
    assert parsed.inline == [], f"inline script or style the CSP would block: {parsed.inline}"
    assert re.search(r"<label[^>]*for=\"files\"", response.text), "the file input has no label"

    head = page.head("/")
    assert head.status_code == 200 and head.content == b""

    again = page.get("/", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304


def test_script_and_stylesheet_are_served_with_their_types(page: httpx.Client) -> None:
    script, stylesheet = _asset_urls(page)
    for url, media_type in ((script, "text/javascript"), (stylesheet, "text/css")):
        assert url.startswith("/static/"), url
        response = page.get(url)
        assert response.status_code == 200, f"{url}: {response.status_code}"
        assert response.headers["content-type"].startswith(media_type), response.headers
        _assert_csp_forbids_inline_script(response)
        # The HTML pins the content's hash, so the pinned URL may be cached for good...
        assert "immutable" in response.headers["cache-control"], response.headers
        # ...and the bare name is revalidated.
        bare = page.get(url.split("?")[0])
        assert bare.status_code == 200 and bare.content == response.content
        assert bare.headers["cache-control"] == "no-cache"
        etag = bare.headers["etag"]
        assert page.get(url.split("?")[0], headers={"If-None-Match": etag}).status_code == 304


def test_script_calls_only_routes_the_api_has(page: httpx.Client) -> None:
    script, _ = _asset_urls(page)
    source = page.get(script).text
    schema: dict[str, Any] = page.get("/openapi.json").json()
    routes = {_normalise(path): ops for path, ops in schema["paths"].items()}

    called = {_normalise(p) for p in re.findall(r"[`\"'](/v1/[^`\"'?]*)", source)}
    expected = {
        "/v1/images",
        "/v1/images/{}",
        "/v1/images/{}/variants/{}",
        "/v1/images/{}/original",
        "/v1/images/{}/reprocess",
        "/v1/images/{}/render-url",
    }
    assert called == expected, f"the script's API paths changed: {sorted(called)}"
    missing = sorted(called - set(routes))
    assert not missing, f"the script calls paths the API does not have: {missing}"
    assert {"get", "post"} <= set(routes["/v1/images"]), "upload or list route is gone"
    assert {"get", "delete"} <= set(routes["/v1/images/{}"]), "status or delete route is gone"
    assert "get" in routes["/v1/images/{}/variants/{}"]
    assert "get" in routes["/v1/images/{}/original"]
    assert "post" in routes["/v1/images/{}/reprocess"]
    assert "post" in routes["/v1/images/{}/render-url"]
    for field in ("status", "variants", "next_cursor", "Idempotency-Key", "Authorization"):
        assert field in source, f"the script no longer uses {field}"

    assert "/" not in schema["paths"]
    assert not [p for p in schema["paths"] if p.startswith("/static")]


@pytest.mark.parametrize(
    "path",
    [
        "/static/../config.py",
        "/static/../../pyproject.toml",
        "/static/..%2Fconfig.py",
        "/static/..%2froutes_web.py",
        "/static/%2e%2e/%2e%2e/config.py",
        "/static/%2e%2e%2f%2e%2e%2fconfig.py",
        "/static/app.js/../../config.py",
        "/static/%2Fetc%2Fpasswd",
        "/static//etc/passwd",
        "/static/app.js%00.py",
        "/static/index.html",
        "/static/routes_web.py",
        "/static/",
        "/static",
    ],
)
def test_nothing_but_the_assets_is_served(web_server: tuple[ImgpipeServer, str], path: str) -> None:
    # http.client sends the path exactly as written (httpx would resolve the dot segments).
    connection = http.client.HTTPConnection("127.0.0.1", web_server[0].port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status == 404, f"{path}: {response.status} {body[:200]!r}"
    assert b"import" not in body and b"root:" not in body


def test_page_needs_no_key_and_is_not_rate_limited(
    web_server: tuple[ImgpipeServer, str], page: httpx.Client
) -> None:
    _, key = web_server
    script, stylesheet = _asset_urls(page)
    bearer = {"Authorization": f"Bearer {key}"}
    for _ in range(REQUESTS_PER_HOUR + 3):
        for url, headers in (("/", {}), (script, {}), (stylesheet, {}), ("/", bearer)):
            response = page.get(url, headers=headers)
            assert response.status_code == 200, f"{url}: {response.status_code}"
            assert "ratelimit-limit" not in response.headers, url

    # The API the page calls is protected: 401 without the key...
    assert_problem(page.get("/v1/images"), 401, "unauthorized")
    # ...and limited with it, so the page above was exempt, not the limit absent.
    for _ in range(REQUESTS_PER_HOUR):
        assert page.get("/v1/images", headers=bearer).status_code == 200
    assert_problem(page.get("/v1/images", headers=bearer), 429, "rate_limited")
