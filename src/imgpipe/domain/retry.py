"""How often, and how soon, failed work is tried again."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, and a fixed number of attempts.

    Full jitter (a uniform delay between 0 and the exponential ceiling) spreads the
    retries of many jobs that failed together, say during a storage outage, so they do
    not all come back at the same instant and fail together again.
    """

    max_attempts: int = 5
    base_s: float = 1.0
    max_s: float = 300.0

    def delay_s(self, attempt: int, uniform: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_s, self.base_s * 2.0 ** min(attempt, 62))
        return uniform() * ceiling

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts
