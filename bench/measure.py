"""Small measuring helpers shared by the benchmarks."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0-100)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def fsync_floor_ms(data: bytes, directory: Path, repeat: int = 10) -> float:
    """Median time to write and fsync ``data`` in ``directory``: the floor under any
    durable upload of the same bytes on the same disk."""
    times = []
    for n in range(repeat):
        path = directory / f"floor-{n}"
        started = time.perf_counter()
        with path.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        times.append((time.perf_counter() - started) * 1000)
        path.unlink()
    return statistics.median(times)
