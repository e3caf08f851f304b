"""Render every variant of one image from a single decode.

The planner fixes the order whatever the profiles say: decode (shrink-on-load, orient,
sRGB) once to a fixed base size (plan.BASE_BOX), keep it in memory, then for each profile
resize -> crop -> alpha -> encode. Variants are derived from that one decode instead of
decoding the file again for each; a profile larger than the base gets its own decode.
Animations are the exception: they are streamed frame-strip by frame-strip from the file
per profile, since holding every frame of a large animation in memory would cost far
more than decoding twice.

Each variant succeeds or fails on its own; the result maps variant name to bytes or to
the error that stopped it. On request the base decode is also kept as the image's render
source (engine/render_source.py), which on-demand renders read instead of the original.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyvips

from imgpipe.domain.errors import CorruptImage, EngineFailure, ImgpipeError
from imgpipe.domain.media import ImageFormat, ProbeResult
from imgpipe.domain.profiles import Animated, Crop, Fit, Profile, VariantSpec
from imgpipe.engine import faces
from imgpipe.engine.analyze import analyze_pixels, file_facts
from imgpipe.engine.deadline import Deadline
from imgpipe.engine.encode import encode
from imgpipe.engine.loaders import FAIL_ON, vips_source
from imgpipe.engine.plan import Geometry, base_size, derivable, plan_geometry
from imgpipe.engine.render_source import encode_source
from imgpipe.engine.render_source import source_size as render_source_size
from imgpipe.engine.steps.alpha import prepare_alpha
from imgpipe.engine.steps.crop import crop, scale_boxes
from imgpipe.engine.steps.decode import decode, to_srgb8
from imgpipe.engine.steps.resize import resize

log = logging.getLogger(__name__)

# Only WebP keeps an animation among the output formats (SPEC §5: "WebP out").
_ANIMATED_OUTPUTS = frozenset({ImageFormat.WEBP})


@dataclass(frozen=True, slots=True)
class Rendered:
    name: str
    format: ImageFormat
    width: int
    height: int
    frames: int
    data: bytes


RenderOutcome = Rendered | ImgpipeError


@dataclass(frozen=True, slots=True)
class RenderResult:
    outcomes: dict[str, RenderOutcome]
    # Sanitised EXIF, dominant colours, BlurHash, pHash; empty when nothing could decode.
    analysis: dict[str, Any]
    # The render source's bytes, when asked for and the image gets one.
    render_source: bytes | None = None


def render_variants(
    path: Path,
    probe: ProbeResult,
    specs: Sequence[VariantSpec],
    deadline: Deadline | None = None,
    *,
    keep_render_source: bool = False,
) -> RenderResult:
    deadline = deadline or Deadline(None)
    outcomes: dict[str, RenderOutcome] = {}
    analysis: dict[str, Any] = {}
    source: bytes | None = None
    still = [s for s in specs if not _keeps_animation(probe, s)]
    moving = [s for s in specs if _keeps_animation(probe, s)]
    if still:
        made, source = _render_still(path, probe, still, deadline, analysis, keep_render_source)
        outcomes.update(made)
    for spec in moving:
        outcomes[spec.name] = _guard(lambda s=spec: _render_animated(path, probe, s, deadline))
    if not analysis and any(isinstance(o, Rendered) for o in outcomes.values()):
        analysis.update(_analyze_first_frame(path, probe))
    if analysis:
        analysis.update(file_facts(path, probe.format, analysis))
    return RenderResult(outcomes, analysis, source)


def _analyze_first_frame(path: Path, probe: ProbeResult) -> dict[str, Any]:
    try:
        frame = decode(path, probe, _small_size(probe.upright_size), all_frames=False)
        return analyze_pixels(frame)
    except (ImgpipeError, pyvips.Error):
        return {}


def _small_size(size: tuple[int, int], longest: int = 64) -> tuple[int, int]:
    scale = min(1.0, longest / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _keeps_animation(probe: ProbeResult, spec: VariantSpec) -> bool:
    return (
        probe.animated
        and spec.profile.animated is Animated.KEEP
        and spec.format in _ANIMATED_OUTPUTS
    )


def _render_still(
    path: Path,
    probe: ProbeResult,
    specs: Sequence[VariantSpec],
    deadline: Deadline,
    analysis: dict[str, Any],
    keep_render_source: bool,
) -> tuple[dict[str, RenderOutcome], bytes | None]:
    upright = probe.upright_size
    geometries = {s.profile.name: plan_geometry(upright, s.profile) for s in specs}
    try:
        deadline.check("decode")
        base_dims = base_size(upright)
        # Materialise once: every variant below reads these pixels, not the file.
        base = decode(path, probe, base_dims, all_frames=False).copy_memory()
    except ImgpipeError as exc:
        return {s.name: exc for s in specs}, None
    except pyvips.Error as exc:
        error: ImgpipeError = CorruptImage("The image data could not be decoded.")
        error.__cause__ = exc
        return {s.name: error for s in specs}, None
    except Exception as exc:  # a decoder bug must fail this image, not the worker
        log.exception("decode failed unexpectedly")
        error = EngineFailure(f"Decoding failed: {type(exc).__name__}.")
        return {s.name: error for s in specs}, None

    analysis.update(analyze_pixels(base))
    source: bytes | None = None
    if keep_render_source and render_source_size(probe) == base_dims:
        # A cache for renders, not a variant: if it cannot be made, renders make it later.
        try:
            source = encode_source(base)
        except pyvips.Error:
            log.warning("render source not encoded", exc_info=True)
    # Faces are found once, on the base decode, and mapped into each variant's size.
    wants_faces = any(s.profile.crop is Crop.FACE and s.profile.fit is Fit.COVER for s in specs)
    base_faces = faces.detect_faces(base) if wants_faces else []

    # Largest first, so each profile's pixels are ready once and reused by its formats.
    outcomes: dict[str, RenderOutcome] = {}
    shaped: dict[str, Any] = {}
    for spec in sorted(specs, key=lambda s: -_area(geometries[s.profile.name])):
        geometry = geometries[spec.profile.name]

        def render_one(spec: VariantSpec = spec, geometry: Geometry = geometry) -> Rendered:
            deadline.check(f"resize {spec.name}")
            pixels = shaped.get(spec.profile.name)
            if pixels is None:
                if derivable(geometry, base_dims):
                    resized = resize(base, geometry.resize)
                else:  # larger than the base: a decode of its own, straight to its size
                    resized = decode(path, probe, geometry.resize, all_frames=False)
                found = scale_boxes(base_faces, resized.width / base.width)
                pixels = crop(resized, geometry.crop, spec.profile.crop, found)
                shaped[spec.profile.name] = pixels
            deadline.check(f"encode {spec.name}")
            out = prepare_alpha(pixels, spec.format)
            data = encode(out, spec.format, spec.profile.quality)
            return Rendered(spec.name, spec.format, out.width, out.height, 1, data)

        outcomes[spec.name] = _guard(render_one)
    return outcomes, source


def _render_animated(
    path: Path, probe: ProbeResult, spec: VariantSpec, deadline: Deadline
) -> Rendered:
    profile: Profile = spec.profile
    geometry = plan_geometry(probe.upright_size, profile)
    deadline.check(f"decode {spec.name}")
    # thumbnail resizes each frame of the strip and keeps page-height, delay and loop.
    image = pyvips.Image.thumbnail(
        vips_source(path, all_frames=True),
        geometry.resize[0],
        height=geometry.resize[1],
        size="force",
        fail_on=FAIL_ON,
    )
    image = to_srgb8(image)
    if profile.fit is Fit.COVER and geometry.crop != geometry.resize:
        image = _crop_frames(image, geometry, profile)
    deadline.check(f"encode {spec.name}")
    data = encode(image, spec.format, profile.quality)
    frame_height = image.get("page-height")
    return Rendered(
        spec.name, spec.format, image.width, frame_height, image.height // frame_height, data
    )


def _crop_frames(image: Any, geometry: Geometry, profile: Profile) -> Any:
    frame_height = image.get("page-height")
    count = image.height // frame_height
    frames = [
        crop(
            image.crop(0, i * frame_height, image.width, frame_height), geometry.crop, profile.crop
        )
        for i in range(count)
    ]
    strip = pyvips.Image.arrayjoin(frames, across=1)
    strip = strip.copy()
    strip.set_type(pyvips.GValue.gint_type, "page-height", geometry.crop[1])
    return strip


def _area(geometry: Geometry) -> int:
    return geometry.resize[0] * geometry.resize[1]


def _guard(work: Any) -> RenderOutcome:
    """Run one variant; turn any engine error into that variant's own failure."""
    try:
        result: Rendered = work()
        return result
    except ImgpipeError as exc:
        return exc
    except Exception as exc:
        if not isinstance(exc, pyvips.Error):  # a bug: fail this variant, keep the worker
            log.exception("variant failed unexpectedly")
            return EngineFailure(f"Rendering failed: {type(exc).__name__}.")
        message = str(exc).lower()
        if any(word in message for word in ("premature", "truncat", "corrupt", "invalid", "read")):
            error: ImgpipeError = CorruptImage("The image data is corrupt or truncated.")
        else:
            error = EngineFailure(f"libvips failed: {str(exc).splitlines()[0]}")
        error.__cause__ = exc
        return error
