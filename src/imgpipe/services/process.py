"""Make an image's variants: the use case every worker (embedded or Celery) runs.

Claim the job under a lease (services.jobs), render every claimed variant from one
decode, store each under its content-addressed key (and the render source that
on-demand renders read, engine/render_source.py), then settle: record each variant's
outcome, schedule retries of transient failures, and hand out the webhook event.
Only then, for an original that gets one, make the large render source (a second
decode, 0.1-0.3 s of CPU), so that no render has to: the image is already "done" and
its webhook out while it is made, and it is a cache, so its failure fails nothing.
Safe to run twice: keys are deterministic and the bytes are too, so a repeat overwrites
a variant with identical bytes (and leaves a stored large copy as it is).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from imgpipe.domain.errors import ImgpipeError, UnexpectedFailure
from imgpipe.domain.media import ImageFormat, ProbeResult
from imgpipe.engine import render_source
from imgpipe.engine.deadline import Deadline
from imgpipe.engine.pipeline import RenderOutcome, render_variants
from imgpipe.engine.probe import probe
from imgpipe.jobs.messages import ProcessImage
from imgpipe.services import jobs, webhooks
from imgpipe.services.deps import ServiceDeps
from imgpipe.storage import keys
from imgpipe.storage.base import ObjectMeta
from imgpipe.telemetry import metrics
from imgpipe.telemetry.context import image_context

log = logging.getLogger(__name__)


def process_image(deps: ServiceDeps, message: ProcessImage) -> None:
    with image_context(message.image_id):
        _process(deps, message.image_id)


def _process(deps: ServiceDeps, image_id: str) -> None:
    # The original's local file (on S3, a download) stays open from the render to the
    # large render source, so the job fetches it once.
    with contextlib.ExitStack() as files:
        with metrics.JOB_SECONDS.time():
            done = _run_job(deps, image_id, files)
        if done is not None:
            # After settle: the image's status and webhook are out, so upload-to-done
            # does not wait for this. A kill here loses nothing: the job is settled, and
            # the first render that needs the copy makes it, as it would without this.
            _store_large_source(deps, done)


@dataclass(frozen=True, slots=True)
class _Rendered:
    outcomes: dict[str, RenderOutcome]
    metadata: dict[str, object]
    source: bytes | None  # the render source (the base copy), when one was made
    # The original's facts (settle records them on a row that lacks them: one uploaded
    # before 0010), and its local file, open until the job's end; None if not reached.
    facts: ProbeResult | None = None
    path: Path | None = None


@dataclass(frozen=True, slots=True)
class _Original:
    """A settled image whose variants were made: what its large render source needs."""

    sha256: str
    path: Path
    facts: ProbeResult


def _run_job(deps: ServiceDeps, image_id: str, files: contextlib.ExitStack) -> _Original | None:
    """Claim, render, store and settle; the original, for the large render source, when
    the job settled with at least one variant made (the original decodes)."""
    claim, event_id = jobs.claim(deps, image_id)
    if event_id is not None:
        webhooks.hand_out_first(deps, event_id)
    if claim is None:
        return None
    with jobs.Heartbeat(deps, claim):
        rendered = _render(deps, claim, files)
        results = _store_variants(deps, claim, rendered.outcomes)
        if rendered.source is not None:
            _store_render_source(deps, claim.sha256, rendered.source)
    settled = jobs.settle(deps, claim, results, rendered.metadata, rendered.facts)
    if settled.status is not None:  # renders in this process see a failure at once
        deps.render_runtime.forget_image(image_id)
    if settled.event_id is not None:
        webhooks.hand_out_first(deps, settled.event_id)
    if settled.status is None:  # deleted meanwhile, or the lease lost: not ours to add to
        return None
    _count(claim, results, settled.status.value)
    made = any(isinstance(result, jobs.Stored) for result in results.values())
    if not made or rendered.path is None or rendered.facts is None:
        return None
    return _Original(claim.sha256, rendered.path, rendered.facts)


def _render(deps: ServiceDeps, claim: jobs.Claim, files: contextlib.ExitStack) -> _Rendered:
    """Outcomes by variant, the analysis, the render source and the original's facts,
    with the original's local file opened in ``files``."""
    facts: ProbeResult | None = None
    try:
        path = files.enter_context(deps.store.local_file(keys.original(claim.sha256)))
        facts = probe(path, deps.limits)
        result = render_variants(
            path,
            facts,
            list(claim.specs.values()),
            Deadline(deps.process_timeout_s),
            keep_render_source=deps.render.intermediate,
            watermarks_dir=deps.render.watermarks_dir,
        )
        outcomes, analysis = dict(result.outcomes), dict(result.analysis)
        return _Rendered(outcomes, analysis, result.render_source, facts, path)
    except ImgpipeError as exc:
        return _Rendered({name: exc for name in claim.specs}, {}, None, facts)
    except Exception as exc:  # unknown: retried like a transient failure, then dead-lettered
        log.exception("unexpected error while rendering")
        failure = UnexpectedFailure(f"{type(exc).__name__}: {exc}"[:500])
        return _Rendered({name: failure for name in claim.specs}, {}, None, facts)


def _store_render_source(deps: ServiceDeps, sha256: str, data: bytes) -> None:
    """A cache, not a variant: a failed write leaves renders to make the copy themselves."""
    try:
        key = keys.render_source(sha256, render_source.SOURCE_VERSION)
        deps.store.put_bytes(key, data, ObjectMeta.render_source())
    except ImgpipeError:
        log.warning("render source not stored", exc_info=True)
        return
    metrics.RENDER_SOURCES_MADE.labels("base", "worker").inc()


def _store_large_source(deps: ServiceDeps, original: _Original) -> None:
    """The large render source (engine/render_source.py), made as the first render that
    needs it would make it: the same bytes, key and headers, so a render URL keeps its
    bytes whichever made the copy. Only where that render would read one, and not again
    where it is stored already (a job run again). A cache: any failure is a warning, and
    leaves the first render that needs the copy to make it."""
    size = render_source.large_source_size(original.facts)
    if not (deps.render.intermediate and deps.render.large_source_eager) or size is None:
        return
    key = keys.render_source(original.sha256, render_source.SOURCE_VERSION, large=True)
    try:
        # The render path's lock for this copy: a render in this process (`serve`) that
        # needs it meanwhile waits for this one instead of making it too.
        with deps.render_runtime.locks.hold(key):
            if deps.store.exists(key):
                return
            # A deadline of its own: a file that decodes slowly cannot hold the worker.
            deadline = Deadline(deps.process_timeout_s)
            data = render_source.make_source(original.path, original.facts, size, deadline)
            deps.store.put_bytes(key, data, ObjectMeta.render_source())
    except Exception:
        log.warning("large render source not made", exc_info=True)
        return
    metrics.RENDER_SOURCES_MADE.labels("large", "worker").inc()


def _store_variants(
    deps: ServiceDeps, claim: jobs.Claim, outcomes: dict[str, RenderOutcome]
) -> dict[str, jobs.VariantResult]:
    results: dict[str, jobs.VariantResult] = {}
    for name, outcome in outcomes.items():
        if isinstance(outcome, ImgpipeError):
            results[name] = outcome
            continue
        spec = claim.specs[name]
        key = keys.variant(claim.sha256, spec.profile.digest, ImageFormat(outcome.format))
        try:
            fmt = ImageFormat(outcome.format)
            deps.store.put_bytes(key, outcome.data, ObjectMeta.public(fmt.media_type))
        except ImgpipeError as exc:
            results[name] = exc
            continue
        results[name] = jobs.Stored(outcome.width, outcome.height, len(outcome.data), key)
    return results


def _count(claim: jobs.Claim, results: dict[str, jobs.VariantResult], status: str) -> None:
    metrics.JOBS.labels(status).inc()
    for name, result in results.items():
        profile = claim.specs[name].profile.name
        if isinstance(result, jobs.Stored):
            metrics.VARIANTS.labels(profile, "done", "").inc()
            metrics.VARIANT_BYTES.inc(result.bytes)
        else:
            # transient: retried unless its attempts were used up (then also dead-lettered)
            outcome = "transient" if result.retryable else "failed"
            metrics.VARIANTS.labels(profile, outcome, result.code).inc()
    log.info("image processed", extra={"status": status, "variants": len(results)})
