"""``imgpipe process``: the engine over files on disk, no server, in parallel processes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from imgpipe.config import usable_cpus
from imgpipe.domain.errors import ImgpipeError
from imgpipe.domain.media import Limits
from imgpipe.domain.profiles import Profile

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor


@dataclass(frozen=True, slots=True)
class BatchInput:
    source: Path
    out_dir: Path  # DIR/<relative path without extension>


@dataclass(slots=True)
class ItemResult:
    source: str
    ok: bool
    bytes_in: int = 0
    bytes_out: int = 0
    outputs: list[str] = field(default_factory=list)
    code: str | None = None
    reason: str | None = None


@dataclass(slots=True)
class BatchSummary:
    images: int = 0
    succeeded: int = 0
    failed: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    workers: int = 1
    failures: list[dict[str, str | None]] = field(default_factory=list)

    def add(self, result: ItemResult) -> None:
        self.images += 1
        self.bytes_in += result.bytes_in
        self.bytes_out += result.bytes_out
        if result.ok:
            self.succeeded += 1
        else:
            self.failed += 1
            self.failures.append(
                {"source": result.source, "code": result.code, "reason": result.reason}
            )

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["images_per_second"] = self.images / self.seconds if self.seconds else 0.0
        return data


def collect_inputs(paths: Sequence[Path], out: Path) -> list[BatchInput]:
    """Every file under each PATH (hidden files skipped), mapped to its output folder."""
    inputs: list[BatchInput] = []
    for root in paths:
        if root.is_file():
            inputs.append(BatchInput(root, out / root.stem))
            continue
        for file in sorted(root.rglob("*")):
            relative = file.relative_to(root)
            if file.is_file() and not any(part.startswith(".") for part in relative.parts):
                inputs.append(BatchInput(file, out / relative.with_suffix("")))
    return inputs


class BatchRunner:
    """Runs the engine over many inputs, in this process or in a pool of processes.

    Use as a context manager and start it before anything starts a thread (the progress
    bar does): worker processes are forked, which skips a fresh interpreter start per
    worker, and forking is only safe while this process has a single thread. libvips is
    never loaded here, only in the workers, so no libvips thread pool is forked either.
    """

    def __init__(
        self,
        inputs: Sequence[BatchInput],
        profiles: Sequence[Profile],
        limits: Limits,
        timeout_s: float,
        workers: int,
        watermarks_dir: Path | None = None,
    ) -> None:
        # Largest files first: the long jobs start early and the pool finishes together.
        self._inputs = sorted(inputs, key=_size_or_zero, reverse=True)
        self._args = (list(profiles), limits, timeout_s, watermarks_dir)
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._futures: list[Future[ItemResult]] = []

    def __enter__(self) -> BatchRunner:
        if self._workers > 1 and len(self._inputs) > 1:
            # Imported for a pool only: 10 ms of start-up a one-process run does without.
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            vips_threads = max(1, usable_cpus() // self._workers)
            self._pool = ProcessPoolExecutor(
                self._workers,
                mp_context=multiprocessing.get_context("fork"),
                initializer=_init_worker,
                initargs=(vips_threads,),
            )
            self._futures = [
                self._pool.submit(process_one, item, *self._args) for item in self._inputs
            ]
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def results(self) -> Iterator[ItemResult]:
        """Each input's result as it completes."""
        if self._pool is not None:
            from concurrent.futures import as_completed

            for future in as_completed(self._futures):
                yield future.result()
            return
        _init_worker(usable_cpus())
        for item in self._inputs:
            yield process_one(item, *self._args)


def _size_or_zero(item: BatchInput) -> int:
    try:
        return item.source.stat().st_size
    except OSError:
        return 0


def _init_worker(vips_threads: int) -> None:
    from imgpipe import engine

    # An explicit VIPS_CONCURRENCY (a benchmark pinning one core, say) wins.
    engine.configure(None if "VIPS_CONCURRENCY" in os.environ else vips_threads)


def process_one(
    item: BatchInput,
    profiles: Sequence[Profile],
    limits: Limits,
    timeout_s: float,
    watermarks_dir: Path | None = None,
) -> ItemResult:
    from imgpipe.engine.deadline import Deadline
    from imgpipe.engine.pipeline import Rendered, render_variants
    from imgpipe.engine.probe import probe

    result = ItemResult(str(item.source), ok=True)
    try:
        result.bytes_in = item.source.stat().st_size
        facts = probe(item.source, limits)
        specs = [spec for profile in profiles for spec in profile.variants()]
        rendered = render_variants(  # the batch writes variants only: no analysis
            item.source,
            facts,
            specs,
            Deadline(timeout_s),
            watermarks_dir=watermarks_dir,
            analyze=False,
        ).outcomes
    except ImgpipeError as exc:
        return _failed(result, exc.code, exc.detail)
    except OSError as exc:
        return _failed(result, "unreadable", str(exc))
    failed = [
        (spec.name, o) for spec in specs if isinstance(o := rendered[spec.name], ImgpipeError)
    ]
    if failed:
        name, error = failed[0]
        return _failed(result, error.code, f"{name}: {error.detail}")
    item.out_dir.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        outcome = rendered[spec.name]
        assert isinstance(outcome, Rendered)
        target = item.out_dir / f"{spec.profile.name}.{outcome.format.extension}"
        _write_atomic(target, outcome.data)
        result.bytes_out += len(outcome.data)
        result.outputs.append(str(target))
    return result


def _failed(result: ItemResult, code: str, reason: str) -> ItemResult:
    result.ok, result.code, result.reason = False, code, reason
    return result


def _write_atomic(target: Path, data: bytes) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def timed(
    results: Iterator[ItemResult], summary: BatchSummary, started: float
) -> Iterator[ItemResult]:
    """Count each result into the summary; seconds run from ``started`` (perf_counter)."""
    for result in results:
        summary.add(result)
        summary.seconds = time.perf_counter() - started
        yield result
