"""Run one command in a clean child process and measure wall time and peak memory.

Peak memory is reported two ways:
- `peak_tree_rss`: the largest sum of RSS over the child and all its descendants, sampled
  every `poll_s` by a background thread (psutil). Shared pages (libraries, copy-on-write
  memory after fork) are counted once per process, so for multi-process runs this is an
  upper bound. Very short spikes between two samples can be missed.
- `max_single_rss`: the kernel's exact high-water mark of the largest single process in the
  tree (`ru_maxrss` from `wait4`), never missed but blind to processes running side by side.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

MB = 1024 * 1024


@dataclass(frozen=True)
class RunResult:
    """What one measured child process did."""

    argv: tuple[str, ...]
    returncode: int
    wall_s: float
    peak_tree_rss: int
    max_single_rss: int
    stdout: str
    stderr: str
    foreign_cpu_s: float = 0.0

    @property
    def foreign_cores(self) -> float:
        """Average number of cores busy with work not ours during the run: noise."""
        return self.foreign_cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def peak_rss(self) -> int:
        """Best estimate of the tree's peak RSS in bytes."""
        return max(self.peak_tree_rss, self.max_single_rss)

    def describe_failure(self) -> str:
        tail = "\n".join(self.stderr.strip().splitlines()[-15:])
        return f"{' '.join(self.argv)} exited {self.returncode}\n{tail}"


def _tree_rss(root: psutil.Process) -> int:
    total = 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


class _RssPoller(threading.Thread):
    def __init__(self, pid: int, poll_s: float) -> None:
        super().__init__(daemon=True)
        self._root = psutil.Process(pid)
        self._poll_s = poll_s
        self._stop_event = threading.Event()
        self.peak = 0

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, _tree_rss(self._root))
            self._stop_event.wait(self._poll_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def machine_busy_s() -> float:
    """CPU seconds all processes on this machine have spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_busy_s() -> float:
    """CPU seconds used by this process and its reaped children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _pin(cpus: frozenset[int] | None) -> Any:
    if cpus is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, cpus)

    return pin


def run_measured(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cpus: frozenset[int] | None = None,
    poll_s: float = 0.02,
) -> RunResult:
    """Run `argv` to completion (pinned to `cpus` if given) and measure it."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        busy_before, own_before = machine_busy_s(), own_busy_s()
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            preexec_fn=_pin(cpus),
        )
        poller = _RssPoller(proc.pid, poll_s)
        poller.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        poller.stop()
        foreign = (machine_busy_s() - busy_before) - (own_busy_s() - own_before)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return RunResult(
            argv=tuple(argv),
            returncode=proc.returncode,
            wall_s=wall,
            peak_tree_rss=poller.peak,
            max_single_rss=usage.ru_maxrss * 1024,  # Linux reports KiB
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            foreign_cpu_s=max(0.0, foreign),
        )


def parse_json_summary(stdout: str) -> dict[str, Any] | None:
    """The JSON object a command printed on stdout (whole output, else the last JSON line)."""
    text = stdout.strip()
    candidates = [text, *reversed(text.splitlines())]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def one_core_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a one-core run: libvips limited to one worker thread."""
    env = dict(os.environ if base is None else base)
    env["VIPS_CONCURRENCY"] = "1"
    return env


def default_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of an all-cores run: libvips left to its own defaults."""
    env = dict(os.environ if base is None else base)
    env.pop("VIPS_CONCURRENCY", None)
    return env
