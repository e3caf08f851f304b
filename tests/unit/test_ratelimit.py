"""Token buckets: the rate format, the in-process limiter, and the shared Redis one."""

from __future__ import annotations

import uuid

import pytest

from backends import REDIS_URL, unavailable
from imgpipe.domain.ratelimit import InProcessLimiter, Rate


@pytest.mark.parametrize(
    ("text", "rate"),
    [("20/second", Rate(20, 1.0)), ("5/minute", Rate(5, 60.0)), ("1000/hour", Rate(1000, 3600.0))],
)
def test_rates_parse(text: str, rate: Rate) -> None:
    assert Rate.parse(text) == rate


@pytest.mark.parametrize("text", ["", "20", "0/second", "-1/second", "ten/second", "5/day"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="20/second"):
        Rate.parse(text)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_a_burst_then_refills_steadily() -> None:
    clock = Clock()
    limiter = InProcessLimiter(clock)
    rate = Rate(3, 1.0)
    decisions = [limiter.hit("k", rate) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    refused = decisions[-1]
    assert refused.retry_after_s == 1 and refused.reset_s == 1
    headers = refused.headers(rate)
    assert headers["Retry-After"] == "1" and headers["RateLimit-Limit"] == "3"
    clock.now += 1 / 3  # one token back
    assert limiter.hit("k", rate).allowed
    assert not limiter.hit("k", rate).allowed
    assert limiter.hit("other key", rate).allowed  # buckets are per key


def test_retry_after_covers_a_slow_rate() -> None:
    limiter = InProcessLimiter(Clock())
    rate = Rate(2, 60.0)
    limiter.hit("k", rate)
    limiter.hit("k", rate)
    refused = limiter.hit("k", rate)
    assert not refused.allowed and refused.retry_after_s == 30 and refused.reset_s == 60


def test_the_redis_bucket_is_shared_between_processes() -> None:
    import redis

    from imgpipe.ratelimit.redis_bucket import RedisLimiter

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        unavailable("Redis", exc)
    prefix = f"imgpipe-test-{uuid.uuid4().hex[:12]}"
    one, two = RedisLimiter(REDIS_URL, prefix), RedisLimiter(REDIS_URL, prefix)
    rate = Rate(4, 60.0)
    allowed = [limiter.hit("key_a", rate).allowed for limiter in (one, two, one, two, one)]
    assert allowed == [True, True, True, True, False]
    refused = two.hit("key_a", rate)
    assert not refused.allowed and refused.retry_after_s >= 1 and refused.remaining == 0
    assert one.hit("key_b", rate).allowed


def test_an_unreachable_redis_lets_requests_through() -> None:
    from imgpipe.ratelimit.redis_bucket import RedisLimiter

    limiter = RedisLimiter("redis://127.0.0.1:1/0", "imgpipe-test")
    assert limiter.hit("k", Rate(1, 1.0)).allowed
