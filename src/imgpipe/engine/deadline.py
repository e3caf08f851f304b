"""A time budget (PROCESS_TIMEOUT_S), checked between pipeline steps and inside libvips.

Between steps is not enough: one step (the decode of a 500-frame animation, its encode)
can run for minutes. ``watch`` hooks the deadline into libvips' progress signal, which
libvips emits as it computes an image; once the deadline has passed, the handler sets
the image's kill flag and libvips abandons the computation with an error, which
``stopped`` turns into ``ProcessTimeout``. Decoders libvips cannot interrupt run in a
child process with a wall timeout taken from ``remaining`` (engine/isolated.py).
Neither hook changes a byte of the output. A stop asked from outside (a worker's soft
time limit: domain/interrupts.py) after the deadline began expires it the same way.
"""

from __future__ import annotations

import time
from typing import Any

from imgpipe.domain.errors import ProcessTimeout
from imgpipe.domain.interrupts import stop_reason


class Deadline:
    def __init__(self, seconds: float | None) -> None:
        self._seconds = seconds
        self._started = time.monotonic()
        self._ends = None if seconds is None else self._started + seconds
        # Every watched image, held for as long as the deadline: libvips hands an image's
        # progress signal down to every image made from it (and keeps the upstream image
        # as the one that emits it), so an image derived from a watched one raises the
        # signal on the watched one. If its Python wrapper were collected first (the
        # runner rebinds `image` step by step), pyvips' callback handle would be freed
        # while libvips still calls it: a fatal "ffi.from_handle() ... points to garbage"
        # that took down the whole serve process on a mutated animated GIF.
        self._watched: list[Any] = []

    @property
    def expired(self) -> bool:
        if stop_reason(self._started) is not None:
            return True
        return self._ends is not None and time.monotonic() > self._ends

    def remaining(self) -> float | None:
        """Seconds left, or None for no deadline."""
        return None if self._ends is None else max(0.0, self._ends - time.monotonic())

    def check(self, step: str) -> None:
        if self.expired:
            raise self.error(step)

    def error(self, step: str) -> ProcessTimeout:
        reason = stop_reason(self._started)
        if reason is not None:
            return ProcessTimeout(f"{reason} (at step {step})")
        return ProcessTimeout(f"Processing ran past {self._seconds:g} s (at step {step}).")

    def watch(self, image: Any) -> Any:
        """``image``, with libvips told to stop computing it (and every image made from
        it) once the deadline has passed. A no-op without a deadline."""
        if self._ends is None:
            return image
        ends, started = self._ends, self._started

        def on_eval(target: Any, _progress: Any) -> None:
            if time.monotonic() > ends or stop_reason(started) is not None:
                target.set_kill(True)

        image.set_progress(True)
        image.signal_connect("eval", on_eval)
        self._watched.append(image)
        return image
