"""Token buckets: the rate format of the settings, and the arithmetic of one bucket.

A rate ``N/second`` is a bucket of N tokens refilled at N per second: a burst of N, then
a steady N per second. The in-process limiter lives here (stdlib only); the Redis one in
``imgpipe.ratelimit`` runs the same arithmetic atomically in a Lua script.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Protocol

_PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}


@dataclass(frozen=True, slots=True)
class Rate:
    tokens: int
    period_s: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``N/second``, ``N/minute`` or ``N/hour``, N >= 1."""
        count, _, unit = text.strip().partition("/")
        period = _PERIODS.get(unit.strip().lower().removesuffix("s"))
        if not count.strip().isdigit() or int(count) < 1 or period is None:
            raise ValueError(f"must look like 20/second, 100/minute or 1000/hour; got {text!r}")
        return cls(int(count), period)

    @property
    def per_second(self) -> float:
        return self.tokens / self.period_s

    @property
    def policy(self) -> str:
        """The IETF RateLimit-Policy form: quota and window in seconds."""
        return f"{self.tokens};w={math.ceil(self.period_s)}"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # seconds until the bucket is full again
    retry_after_s: int  # seconds until the next token, when refused

    def headers(self, rate: Rate) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
            "RateLimit-Policy": rate.policy,
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


def take(tokens: float, elapsed_s: float, rate: Rate) -> tuple[bool, float]:
    """Refill for ``elapsed_s``, then take one token if there is one."""
    tokens = min(float(rate.tokens), tokens + max(elapsed_s, 0.0) * rate.per_second)
    if tokens >= 1.0:
        return True, tokens - 1.0
    return False, tokens


def decision(allowed: bool, tokens: float, rate: Rate) -> Decision:
    missing_for_one = 0.0 if allowed else 1.0 - tokens
    return Decision(
        allowed=allowed,
        limit=rate.tokens,
        remaining=int(tokens),
        reset_s=math.ceil((rate.tokens - tokens) / rate.per_second),
        retry_after_s=max(1, math.ceil(missing_for_one / rate.per_second)) if not allowed else 0,
    )


class RateLimiter(Protocol):
    def hit(self, bucket: str, rate: Rate) -> Decision:
        """Take one token from ``bucket``; say whether it was there."""


class InProcessLimiter:
    """Buckets in this process's memory: exact for one process (``imgpipe serve``)."""

    def __init__(self, clock: object = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def hit(self, bucket: str, rate: Rate) -> Decision:
        now: float = self._clock()  # type: ignore[operator]
        key = f"{bucket}:{rate.tokens}/{rate.period_s}"
        with self._lock:
            tokens, stamp = self._buckets.get(key, (float(rate.tokens), now))
            allowed, tokens = take(tokens, now - stamp, rate)
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > 100_000:  # forget full buckets; they hold no state
                self._forget_full(now)
        return decision(allowed, tokens, rate)

    def _forget_full(self, now: float) -> None:
        for key in list(self._buckets)[:50_000]:
            del self._buckets[key]
