"""Render cache hits as a user meets them: served by the plain route, still signed, and
never stale after a delete or a verdict beyond what docs/render.md promises (at once in
the process that decided, within RENDER_LOOKUP_TTL_S in any other). Real SQLite, a real
local store, the real app in-process."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from imgpipe.api.app import create_app
from imgpipe.domain.moderation import Decision
from imgpipe.domain.signing import sign_render_url
from imgpipe.services import manage, moderation
from imgpipe.services.deps import ServiceDeps
from imgpipe.services.render_runtime import LookupCache, LruCache, RenderRuntime
from imgpipe.storage.local import LocalStore

from .sqlite_deps import NoQueue, sqlite_deps
from .test_render_source import OWNER, photo, upload

KEY = b"k"  # sqlite_deps' signing key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def process_deps(tmp_path: Path, clock: Clock, **fields: object) -> Iterator[ServiceDeps]:
    """One API process's deps: its own render runtime over the shared database and store."""
    runtime = RenderRuntime(lookup_ttl_s=2.0, local_reads=True, clock=clock)
    with sqlite_deps(
        tmp_path,
        store=LocalStore(tmp_path / "objects"),
        queue=NoQueue(),
        render_runtime=runtime,
        **fields,
    ) as deps:
        yield deps


@pytest.fixture
def deps(tmp_path: Path, clock: Clock) -> Iterator[ServiceDeps]:
    yield from process_deps(tmp_path, clock)


@pytest.fixture
def other_process(tmp_path: Path, clock: Clock) -> Iterator[ServiceDeps]:
    yield from process_deps(tmp_path, clock)


@pytest.fixture
def image_id(deps: ServiceDeps) -> str:
    return upload(deps, photo(640, 480, seed=7))[0]


def url(image_id: str, query: str = "w=100&format=webp", exp: int | None = None) -> str:
    return sign_render_url(f"/v1/render/{image_id}?{query}", KEY, exp)


def client(deps: ServiceDeps) -> TestClient:
    return TestClient(create_app(deps))


def test_a_hit_is_served_by_the_plain_route_with_the_same_answer(
    deps: ServiceDeps, image_id: str
) -> None:
    with client(deps) as http:
        first = http.get(url(image_id))
        hit = http.get(url(image_id))
        head = http.head(url(image_id))
        again = http.get(url(image_id), headers={"If-None-Match": f"W/{hit.headers['etag']}"})
        metrics = http.get("/metrics").text
    assert first.headers["x-render-cache"] == "miss"
    assert hit.status_code == 200 and hit.headers["x-render-cache"] == "hit"
    assert hit.content == first.content and hit.headers["content-type"] == "image/webp"
    assert hit.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert hit.headers["ratelimit-limit"]  # the keyless rate limit still counts hits
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(hit.content))
    assert again.status_code == 304 and again.headers["etag"] == hit.headers["etag"]
    # Timed under the route's own template, as before.
    assert 'route="/v1/render/{name}",status="200"' in metrics


def test_errors_on_the_plain_route_are_the_usual_problems(deps: ServiceDeps) -> None:
    with client(deps) as http:
        missing = http.get(url("img_nosuchimage"))
        unsigned = http.get("/v1/render/img_nosuchimage?w=10")
        posted = http.post(url("img_nosuchimage"))
        nested = http.get("/v1/render/a/b")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert missing.headers["content-type"] == "application/problem+json"
    assert unsigned.status_code == 403 and unsigned.json()["code"] == "bad_signature"
    assert posted.status_code == 405 and "GET" in posted.headers["allow"]
    assert nested.status_code == 404


def test_hits_still_check_the_signature_and_its_expiry(deps: ServiceDeps, image_id: str) -> None:
    exp = int(time.time()) + 2
    good = url(image_id, exp=exp)
    with client(deps) as http:
        assert http.get(good).status_code == 200
        assert http.get(good).headers["x-render-cache"] == "hit"
        forged = good[: -len("x")] + ("A" if good[-1] != "A" else "B")
        assert http.get(forged).json()["code"] == "bad_signature"
        longer = good.replace(f"exp={exp}", f"exp={exp + 3600}")
        assert http.get(longer).json()["code"] == "bad_signature"
        time.sleep(max(0.0, exp - time.time()) + 1.1)
        expired = http.get(good)  # the same bytes that were verified a moment ago
    assert expired.status_code == 403 and expired.json()["code"] == "expired"


def test_a_delete_is_404_at_once_in_the_process_that_made_it(
    deps: ServiceDeps, image_id: str
) -> None:
    with client(deps) as http:
        assert http.get(url(image_id)).status_code == 200
        assert http.get(url(image_id)).headers["x-render-cache"] == "hit"  # the row is cached
        manage.delete(deps, image_id, OWNER)
        assert http.get(url(image_id)).status_code == 404
        manage.restore(deps, image_id)
        assert http.get(url(image_id)).status_code == 200


def test_another_process_sees_a_delete_within_the_ttl(
    deps: ServiceDeps, other_process: ServiceDeps, image_id: str, clock: Clock
) -> None:
    with client(deps) as http:
        assert http.get(url(image_id)).status_code == 200  # this process caches the row
        manage.delete(other_process, image_id, OWNER)  # decided elsewhere
        clock.now += 1.9
        assert http.get(url(image_id)).status_code == 200  # within RENDER_LOOKUP_TTL_S
        clock.now += 0.2
        assert http.get(url(image_id)).status_code == 404  # past it: read again


def test_a_moderation_verdict_applies_at_once_where_it_was_made(
    deps: ServiceDeps, image_id: str
) -> None:
    with client(deps) as http:
        assert http.get(url(image_id)).status_code == 200  # the row is cached
        moderation.decide(deps, image_id, Decision.REJECT, "admin:test", "no")
        rejected = http.get(url(image_id))
        moderation.decide(deps, image_id, Decision.APPROVE, "admin:test", None)
        approved = http.get(url(image_id))
    assert rejected.status_code == 403 and rejected.json()["code"] == "content_rejected"
    assert approved.status_code == 200


def test_the_lookup_cache_is_bounded_and_expires(clock: Clock) -> None:
    cache: LookupCache[str] = LookupCache(ttl_s=2.0, size=3, clock=clock)
    loads: list[str] = []

    def load(key: str) -> str:
        loads.append(key)
        return key.upper()

    for key in "abcd":
        assert cache.get(key, functools.partial(load, key)) == key.upper()
    assert len(cache) == 3  # "a" went first
    cache.get("a", lambda: load("a"))
    assert loads == ["a", "b", "c", "d", "a"]
    cache.get("d", lambda: load("d"))
    assert loads[-1] == "a"  # "d" still fresh
    clock.now += 2.0
    cache.get("d", lambda: load("d"))
    assert loads[-1] == "d"  # expired, read again
    assert cache.get("zzz", lambda: None) is None
    assert cache.cached("zzz") == (True, None)  # "no such image" is cached too


def test_an_invalidation_is_not_undone_by_a_slower_read(clock: Clock) -> None:
    cache: LookupCache[str] = LookupCache(ttl_s=2.0, clock=clock)

    def read_then_deleted() -> str:
        cache.invalidate("img")  # the delete commits while this read is under way
        return "old row"

    assert cache.get("img", read_then_deleted) == "old row"
    assert cache.cached("img") == (False, None)  # the next request reads again


def test_the_other_render_caches_are_bounded() -> None:
    lru: LruCache[int, int] = LruCache(4)
    for n in range(100):
        lru.put(n, n)
    assert len(lru) == 4 and lru.get(99) == 99 and lru.get(0) is None
    runtime = RenderRuntime()
    for cache in (runtime.watermark_digests, runtime.signed, runtime.digests):
        assert cache._size <= 4096
