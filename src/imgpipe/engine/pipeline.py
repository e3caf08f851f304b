"""Render every variant of one image from a single decode: the worker's use of the engine.

Each profile's options are planned (engine/plan.py) and run (engine/runner.py) like any
render; what the worker adds is where the pixels come from: the image is decoded once
(shrink-on-load, orient, sRGB) to a fixed base size (plan.BASE_BOX) and kept in memory,
and each plan's decode is a resize of that base (a profile larger than the base gets a
decode of its own). Faces are found once, on the base. Animations kept as such are
decoded per profile with every frame, since holding every frame of a large animation in
memory would cost far more than decoding twice.

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

from imgpipe.domain.errors import ImgpipeError
from imgpipe.domain.media import ImageFormat, ProbeResult
from imgpipe.domain.profiles import VariantSpec
from imgpipe.domain.render_options import BadOption
from imgpipe.engine import faces
from imgpipe.engine.deadline import Deadline
from imgpipe.engine.errors import as_error
from imgpipe.engine.plan import base_size, plan
from imgpipe.engine.render_source import encode_source
from imgpipe.engine.render_source import source_size as render_source_size
from imgpipe.engine.runner import keeps_animation, run
from imgpipe.engine.steps.crop import scale_boxes
from imgpipe.engine.steps.decode import decode
from imgpipe.engine.steps.resize import resize
from imgpipe.engine.steps.watermark import load_watermark

log = logging.getLogger(__name__)


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


class _Base:
    """The worker's pixels: one base decode, resized to each plan's decode size."""

    def __init__(self, path: Path, probe: ProbeResult, deadline: Deadline) -> None:
        self.path = path
        self.probe = probe
        self.deadline = deadline
        self.animated = probe.animated
        self.source_bytes = path.stat().st_size
        self._base: Any | None = None
        self._faces: list[faces.Box] | None = None

    @property
    def base(self) -> Any:
        if self._base is None:
            size = base_size(self.probe.upright_size)
            # Materialised once: every variant below reads these pixels, not the file.
            self._base = decode(
                self.path, self.probe, size, all_frames=False, deadline=self.deadline
            ).copy_memory()
        return self._base

    def upright(self, size: tuple[int, int], *, all_frames: bool) -> Any:
        if all_frames:
            return decode(self.path, self.probe, size, all_frames=True, deadline=self.deadline)
        if size[0] <= self.base.width and size[1] <= self.base.height:
            return resize(self.base, size)
        return decode(self.path, self.probe, size, all_frames=False, deadline=self.deadline)

    def faces_at(self, size: tuple[int, int]) -> list[faces.Box]:
        if self._faces is None:
            self._faces = faces.detect_faces(self.base)
        return scale_boxes(self._faces, size[0] / self.base.width)


def render_variants(
    path: Path,
    probe: ProbeResult,
    specs: Sequence[VariantSpec],
    deadline: Deadline | None = None,
    *,
    keep_render_source: bool = False,
    watermarks_dir: Path | None = None,
    analyze: bool = True,
) -> RenderResult:
    """``analyze`` False skips the image's analysis (palette, hashes, quality: 40-70 ms a
    photo), for callers that keep only the variants (the batch CLI)."""
    # numpy, under the analysis, takes 0.3 s to import: only when analysing.
    if analyze:
        from imgpipe.engine.analyze import analyze_pixels, file_facts
    deadline = deadline or Deadline(None)
    pixels = _Base(path, probe, deadline)
    outcomes: dict[str, RenderOutcome] = {}
    analysis: dict[str, Any] = {}
    source: bytes | None = None
    plans = {}
    for spec in specs:
        try:
            plans[spec.name] = plan(spec.options, probe.upright_size)
        except ImgpipeError as exc:
            outcomes[spec.name] = exc
    if any(not keeps_animation(pixels, p, s.format) for s in specs if (p := plans.get(s.name))):
        try:
            deadline.check("decode")
            base = pixels.base
        except Exception as exc:  # the one decode failed: every variant fails with it
            error = as_error(exc)
            return RenderResult({s.name: error for s in specs}, {})
        if analyze:
            analysis.update(analyze_pixels(base))
        if keep_render_source and render_source_size(probe) == (base.width, base.height):
            source = _render_source(base)
    for spec in specs:
        if spec.name not in plans:
            continue
        try:
            mark = _watermark(watermarks_dir, spec)
            out = run(plans[spec.name], pixels, spec.format, deadline, watermark=mark)
            outcomes[spec.name] = Rendered(
                spec.name, out.format, out.width, out.height, out.frames, out.data
            )
        except Exception as exc:
            outcomes[spec.name] = as_error(exc)
    if analyze and not analysis and any(isinstance(o, Rendered) for o in outcomes.values()):
        analysis.update(_analyze_first_frame(path, probe))
    if analysis:
        analysis.update(file_facts(path, probe.format, analysis))
    return RenderResult(outcomes, analysis, source)


def _render_source(base: Any) -> bytes | None:
    """A cache for renders, not a variant: if it cannot be made, renders make it later."""
    try:
        return encode_source(base)
    except Exception:
        log.warning("render source not encoded", exc_info=True)
        return None


def _watermark(folder: Path | None, spec: VariantSpec) -> Any | None:
    mark = spec.options.watermark
    if mark is None:
        return None
    path = folder / f"{mark.name}.png" if folder else None
    if path is None or not path.is_file():
        raise BadOption("wm", "a watermark in WATERMARKS_DIR", mark.name)
    return load_watermark(path)


def _analyze_first_frame(path: Path, probe: ProbeResult) -> dict[str, Any]:
    from imgpipe.engine.analyze import analyze_pixels

    try:
        frame = decode(path, probe, _small_size(probe.upright_size), all_frames=False)
        return analyze_pixels(frame)
    except Exception:
        return {}


def _small_size(size: tuple[int, int], longest: int = 64) -> tuple[int, int]:
    scale = min(1.0, longest / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))
