"""A stop asked of the work in progress from outside it (a worker's soft time limit).

A signal handler's exception can be lost: Python runs the handler at the next bytecode,
and when that bytecode is inside a callback from C (pyvips hands libvips' log messages
to Python while libvips computes), cffi reports the exception as unraisable and carries
on. So the handler also records the stop here, and the engine's deadline
(engine/deadline.py), which began before it, reads it between steps and inside libvips.
Module state on purpose: a signal handler has nothing else to reach the work through.
"""

from __future__ import annotations

import math
import time

_requested_at = -math.inf  # time.monotonic() of the last request
_reason = ""


def request_stop(reason: str) -> None:
    """Ask every piece of work begun before now to stop, saying ``reason``."""
    global _requested_at, _reason
    _reason = reason
    _requested_at = time.monotonic()


def stop_reason(since: float) -> str | None:
    """Why work begun at ``since`` (time.monotonic()) was asked to stop, or None."""
    return _reason if _requested_at >= since else None
