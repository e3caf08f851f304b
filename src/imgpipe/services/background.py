"""A daemon thread that runs one housekeeping function every few seconds until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Periodic:
    name: str
    interval_s: float
    run: Callable[[], object]
    run_at_start: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        if self.run_at_start:
            self._once()
        while not self._stop.wait(self.interval_s):
            self._once()

    def _once(self) -> None:
        try:
            self.run()
        except Exception:  # a database or broker blip: try again next round
            log.warning("%s failed; retrying next round", self.name, exc_info=True)
