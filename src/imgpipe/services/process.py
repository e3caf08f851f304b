"""Make an image's variants: the use case every worker (embedded or Celery) runs.

Claim the variants that are not done, render them all from one decode, store each under
its content-addressed key, then record each variant's outcome and roll the image up.
Safe to run twice: keys are deterministic and the bytes are too, so a repeat overwrites
a variant with identical bytes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from imgpipe.db import repo
from imgpipe.domain.errors import ImgpipeError
from imgpipe.domain.media import ImageFormat
from imgpipe.domain.profiles import VariantSpec
from imgpipe.domain.states import VariantStatus
from imgpipe.engine.deadline import Deadline
from imgpipe.engine.pipeline import Rendered, RenderOutcome, render_variants
from imgpipe.engine.probe import probe
from imgpipe.jobs.messages import ProcessImage
from imgpipe.services import webhooks
from imgpipe.services.deps import ServiceDeps
from imgpipe.storage import keys
from imgpipe.telemetry import metrics
from imgpipe.telemetry.context import image_context

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Claim:
    image_id: str
    sha256: str
    specs: dict[str, VariantSpec]
    unknown: list[str]  # variant names whose profile no longer exists


def process_image(deps: ServiceDeps, message: ProcessImage) -> None:
    with image_context(message.image_id), metrics.JOB_SECONDS.time():
        _process(deps, message.image_id)


def _process(deps: ServiceDeps, image_id: str) -> None:
    claim = _claim(deps, image_id)
    if claim is None:
        return
    outcomes: dict[str, RenderOutcome] = {}
    analysis: dict[str, object] = {}
    if claim.specs:
        try:
            with deps.store.local_file(keys.original(claim.sha256)) as path:
                facts = probe(path, deps.limits)
                result = render_variants(
                    path, facts, list(claim.specs.values()), Deadline(deps.process_timeout_s)
                )
            outcomes, analysis = result.outcomes, result.analysis
        except ImgpipeError as exc:
            outcomes = {name: exc for name in claim.specs}
    stored = _store_variants(deps, claim, outcomes)
    _record(deps, claim, stored, analysis)
    webhooks.emit_for_image(deps, claim.image_id)


def _claim(deps: ServiceDeps, image_id: str) -> _Claim | None:
    with deps.sessions.begin() as session:
        image = repo.get_image_any_owner(session, image_id)
        if image is None:
            return None  # deleted while queued
        todo = repo.variants_to_do(image)
        specs: dict[str, VariantSpec] = {}
        unknown: list[str] = []
        for variant in todo:
            spec = deps.profiles.variant(variant.name)
            if spec is None:
                unknown.append(variant.name)
                continue
            specs[variant.name] = spec
            variant.status = VariantStatus.PROCESSING.value
            variant.attempts += 1
        repo.refresh_status(image)
        if not todo:
            return None
        return _Claim(image.id, image.sha256, specs, unknown)


def _store_variants(
    deps: ServiceDeps, claim: _Claim, outcomes: dict[str, RenderOutcome]
) -> dict[str, tuple[RenderOutcome, str | None]]:
    stored: dict[str, tuple[RenderOutcome, str | None]] = {}
    for name, outcome in outcomes.items():
        if isinstance(outcome, ImgpipeError):
            stored[name] = (outcome, None)
            continue
        spec = claim.specs[name]
        key = keys.variant(claim.sha256, spec.profile.digest, ImageFormat(outcome.format))
        try:
            deps.store.put_bytes(key, outcome.data)
            stored[name] = (outcome, key)
        except ImgpipeError as exc:
            stored[name] = (exc, None)
    return stored


def _record(
    deps: ServiceDeps,
    claim: _Claim,
    stored: dict[str, tuple[RenderOutcome, str | None]],
    analysis: dict[str, object],
) -> None:
    with deps.sessions.begin() as session:
        image = repo.get_image_any_owner(session, claim.image_id)
        if image is None:
            return
        for variant in image.variants:
            if variant.name in claim.unknown:
                variant.status = VariantStatus.FAILED.value
                variant.error_code = "unknown_profile"
                variant.error = f"Profile of variant {variant.name!r} is no longer configured."
                continue
            if variant.name not in stored:
                continue
            outcome, key = stored[variant.name]
            if isinstance(outcome, Rendered) and key is not None:
                variant.status = VariantStatus.DONE.value
                variant.width, variant.height = outcome.width, outcome.height
                variant.bytes = len(outcome.data)
                variant.storage_key = key
                variant.error_code = variant.error = None
            elif isinstance(outcome, ImgpipeError):
                variant.status = VariantStatus.FAILED.value
                variant.error_code = outcome.code
                variant.error = outcome.detail
                log.warning("variant failed", extra={"variant": variant.name, "code": outcome.code})
        if analysis:
            image.image_metadata = dict(analysis)
        status = repo.refresh_status(image)
    _count(claim, stored, status.value)


def _count(claim: _Claim, stored: dict[str, tuple[RenderOutcome, str | None]], status: str) -> None:
    metrics.JOBS.labels(status).inc()
    for name, (outcome, key) in stored.items():
        profile = claim.specs[name].profile.name
        if isinstance(outcome, Rendered) and key is not None:
            metrics.VARIANTS.labels(profile, "done", "").inc()
            metrics.VARIANT_BYTES.inc(len(outcome.data))
        elif isinstance(outcome, ImgpipeError):
            metrics.VARIANTS.labels(profile, "failed", outcome.code).inc()
    log.info("image processed", extra={"status": status, "variants": len(stored)})
