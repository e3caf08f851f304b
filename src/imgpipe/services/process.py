"""Make an image's variants: the use case every worker (embedded or Celery) runs.

Claim the job under a lease (services.jobs), render every claimed variant from one
decode, store each under its content-addressed key (and the render source that
on-demand renders read, engine/render_source.py), then settle: record each variant's
outcome, schedule retries of transient failures, and hand out the webhook event.
Safe to run twice: keys are deterministic and the bytes are too, so a repeat overwrites
a variant with identical bytes.
"""

from __future__ import annotations

import logging

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
from imgpipe.storage.base import PRIVATE_NO_STORE, ObjectMeta
from imgpipe.telemetry import metrics
from imgpipe.telemetry.context import image_context

log = logging.getLogger(__name__)


def process_image(deps: ServiceDeps, message: ProcessImage) -> None:
    with image_context(message.image_id), metrics.JOB_SECONDS.time():
        _process(deps, message.image_id)


def _process(deps: ServiceDeps, image_id: str) -> None:
    claim, event_id = jobs.claim(deps, image_id)
    if event_id is not None:
        webhooks.hand_out_first(deps, event_id)
    if claim is None:
        return
    with jobs.Heartbeat(deps, claim):
        outcomes, metadata, source, facts = _render(deps, claim)
        results = _store_variants(deps, claim, outcomes)
        if source is not None:
            _store_render_source(deps, claim.sha256, source)
    settled = jobs.settle(deps, claim, results, metadata, facts)
    if settled.status is not None:  # renders in this process see a failure at once
        deps.render_runtime.forget_image(image_id)
    if settled.event_id is not None:
        webhooks.hand_out_first(deps, settled.event_id)
    if settled.status is not None:
        _count(claim, results, settled.status.value)


def _render(
    deps: ServiceDeps, claim: jobs.Claim
) -> tuple[dict[str, RenderOutcome], dict[str, object], bytes | None, ProbeResult | None]:
    """Outcomes by variant, the analysis, the render source, and the original's facts
    (settle records them on a row that lacks them: one uploaded before 0010)."""
    facts: ProbeResult | None = None
    try:
        with deps.store.local_file(keys.original(claim.sha256)) as path:
            facts = probe(path, deps.limits)
            result = render_variants(
                path,
                facts,
                list(claim.specs.values()),
                Deadline(deps.process_timeout_s),
                keep_render_source=deps.render.intermediate,
                watermarks_dir=deps.render.watermarks_dir,
            )
        return dict(result.outcomes), dict(result.analysis), result.render_source, facts
    except ImgpipeError as exc:
        return {name: exc for name in claim.specs}, {}, None, facts
    except Exception as exc:  # unknown: retried like a transient failure, then dead-lettered
        log.exception("unexpected error while rendering")
        failure = UnexpectedFailure(f"{type(exc).__name__}: {exc}"[:500])
        return {name: failure for name in claim.specs}, {}, None, facts


def _store_render_source(deps: ServiceDeps, sha256: str, data: bytes) -> None:
    """A cache, not a variant: a failed write leaves renders to make the copy themselves."""
    try:
        # A full-size copy of the original's pixels: kept private like the original.
        meta = ObjectMeta(ImageFormat.JPEG.media_type, PRIVATE_NO_STORE)
        deps.store.put_bytes(keys.render_source(sha256, render_source.SOURCE_VERSION), data, meta)
    except ImgpipeError:
        log.warning("render source not stored", exc_info=True)


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
