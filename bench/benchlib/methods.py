"""The methods under test, as commands to run in a fresh child process each."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchlib.runner import (
    RunResult,
    default_env,
    one_core_env,
    parse_json_summary,
    run_measured,
)

BENCH_DIR = Path(__file__).resolve().parents[1]
ONE_CORE = frozenset({0})
# Taken at import, before parent_off_measured_core() narrows this process's own affinity.
ALL_CORES = frozenset(os.sched_getaffinity(0))

ArgvBuilder = Callable[[Path, Path], list[str]]


@dataclass(frozen=True)
class Method:
    """A way of turning SRC_DIR into OUT_DIR/<name>/<profile>.webp."""

    key: str
    label: str
    argv: ArgvBuilder
    one_core: bool
    needs_bench_path: bool = False
    checked: bool = True  # its outputs go through the quality checks

    def cpus(self) -> frozenset[int]:
        """CPU 0 for the one-core runs; otherwise every CPU the benchmark started with."""
        return ONE_CORE if self.one_core else ALL_CORES

    def env(self) -> dict[str, str]:
        env = one_core_env() if self.one_core else default_env()
        if self.needs_bench_path:
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(BENCH_DIR), env.get("PYTHONPATH", "")) if p
            )
        return env


def imgpipe_command() -> list[str]:
    """$IMGPIPE_BENCH_COMMAND if set (split like a shell would), else the imgpipe console
    script beside this interpreter, else `python -m imgpipe`."""
    override = os.environ.get("IMGPIPE_BENCH_COMMAND")
    if override:
        return shlex.split(override)
    script = Path(sys.executable).parent / "imgpipe"
    return [str(script)] if script.exists() else [sys.executable, "-m", "imgpipe"]


def imgpipe_problem() -> str | None:
    """None if `imgpipe process --help` works, else why not."""
    argv = [*imgpipe_command(), "process", "--help"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except OSError as exc:
        return f"{' '.join(argv)}: {exc}"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return f"{' '.join(argv)} exited {done.returncode}: {' | '.join(tail)}"
    return None


def _where(one_core: bool) -> str:
    return "1 core" if one_core else "all cores"


def baseline(key: str, name: str, *extra: str, one_core: bool = True) -> Method:
    """A baseline from benchlib.baselines; `extra` goes to its command line."""

    def argv(src: Path, out: Path) -> list[str]:
        return [sys.executable, "-m", "benchlib.baselines", key, str(src), str(out), *extra]

    return Method(
        key=key,
        label=f"{name} ({_where(one_core)})",
        argv=argv,
        one_core=one_core,
        needs_bench_path=True,
    )


def imgpipe(workers: int, *, one_core: bool) -> Method:
    """`imgpipe process SRC --out OUT --workers N --json`."""

    def argv(src: Path, out: Path) -> list[str]:
        return [
            *imgpipe_command(),
            "process",
            str(src),
            "--out",
            str(out),
            "--workers",
            str(workers),
            "--json",
        ]

    return Method(
        key=f"imgpipe-{workers}",
        label=f"imgpipe --workers {workers} ({_where(one_core)})",
        argv=argv,
        one_core=one_core,
    )


def scaling_ceiling(processes: int) -> Method:
    """Bare pyvips split over `processes` independent processes, one pinned per CPU: what
    this machine gives for perfectly parallel work (the bound for --workers N)."""
    method = baseline("pyvips", "", "--processes", str(processes), one_core=False)
    return Method(
        key=f"pyvips-x{processes}",
        label=f"bare pyvips x{processes} processes",
        argv=method.argv,
        one_core=False,
        needs_bench_path=True,
        checked=False,
    )


NAIVE = baseline("naive", "naive Pillow")
BARE_PYVIPS = baseline("pyvips", "bare pyvips")
IMGPIPE_1 = imgpipe(1, one_core=True)
IMGPIPE_2 = imgpipe(2, one_core=False)
PYVIPS_X2 = scaling_ceiling(2)


class BenchError(Exception):
    """Something went wrong that makes a figure meaningless (not a missed target)."""


def _count(value: object) -> int:
    """A summary's `images` or `failed`: a number, or a list/dict of entries."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, list | dict):
        return len(value)
    return 0


def run_method(method: Method, src: Path, out: Path, expected: int) -> tuple[RunResult, float]:
    """One clean run of `method` over `src` into an emptied `out`.

    Returns the measured run and the seconds the command itself reported. Raises
    BenchError unless it exited 0 and its JSON summary says `expected` images, none failed.
    """
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    result = run_measured(method.argv(src, out), env=method.env(), cpus=method.cpus())
    if result.returncode != 0:
        raise BenchError(f"{method.label} failed:\n{result.describe_failure()}")
    summary = parse_json_summary(result.stdout)
    if summary is None:
        raise BenchError(f"{method.label} printed no JSON summary:\n{result.stdout[-2000:]}")
    images, failed = _count(summary.get("images")), _count(summary.get("failed"))
    if failed or images != expected:
        raise BenchError(
            f"{method.label}: {images} images, {failed} failed, expected {expected}: "
            f"{json.dumps(summary)[:2000]}"
        )
    seconds = summary.get("seconds")
    return result, float(seconds) if isinstance(seconds, int | float) else float("nan")


@contextmanager
def parent_off_measured_core() -> Iterator[None]:
    """Keep this process (and its RSS poller thread) off the core one-core runs use."""
    before = os.sched_getaffinity(0)
    others = before - ONE_CORE
    if others:
        os.sched_setaffinity(0, others)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
