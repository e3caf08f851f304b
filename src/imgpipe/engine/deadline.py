"""A time budget checked between pipeline steps (PROCESS_TIMEOUT_S)."""

from __future__ import annotations

import time

from imgpipe.domain.errors import ProcessTimeout


class Deadline:
    def __init__(self, seconds: float | None) -> None:
        self._seconds = seconds
        self._ends = None if seconds is None else time.monotonic() + seconds

    def check(self, step: str) -> None:
        if self._ends is not None and time.monotonic() > self._ends:
            raise ProcessTimeout(f"Processing ran past {self._seconds:g} s (at step {step}).")
