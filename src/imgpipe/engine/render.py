"""On-demand render: one image, one set of options, one output, through the one engine.

The options are planned (engine/plan.py) from header facts alone, so the service can
refuse an oversized output before decoding anything, and always from the original's
size: when the pixels come from the image's render source (engine/render_source.py) the
plan made from the original still holds, so the output is the same size either way. The
file is decoded straight to the planned size (shrink-on-load) and the plan run on it
(engine/runner.py) with the encoder settings for a waiting client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imgpipe.domain.media import ImageFormat, ProbeResult
from imgpipe.domain.render_options import RenderOptions
from imgpipe.engine import faces
from imgpipe.engine.deadline import Deadline
from imgpipe.engine.errors import vips_errors
from imgpipe.engine.plan import Plan, plan
from imgpipe.engine.runner import Output, run
from imgpipe.engine.steps.decode import decode
from imgpipe.engine.steps.watermark import load_watermark


class _File:
    """A file decoded straight to each planned size.

    ``fast_shrink`` lets libjpeg scale a JPEG all the way to the planned size while it
    decodes (steps/decode.py): right for an original many times the output's size, where
    it saves most of the decode and Lanczos still does the last step; wrong for the render
    source, often about twice the output's size, where libjpeg's halving would do the
    whole resize, with more aliasing than Lanczos (up to 0.05 less SSIM measured on the
    corpus photos, for 10-20 ms less CPU)."""

    def __init__(
        self, path: Path, probe: ProbeResult, *, fast_shrink: bool, deadline: Deadline
    ) -> None:
        self.path = path
        self.deadline = deadline
        self.probe = probe
        self.animated = probe.animated
        self.source_bytes = path.stat().st_size
        self.fast_shrink = fast_shrink

    def upright(self, size: tuple[int, int], *, all_frames: bool) -> Any:
        return decode(
            self.path,
            self.probe,
            size,
            all_frames=all_frames,
            fast_shrink=self.fast_shrink,
            deadline=self.deadline,
        ).copy_memory()  # crop strategies and face detection read the pixels more than once

    def faces_at(self, size: tuple[int, int]) -> list[faces.Box] | None:
        return None


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def output_format(fmt: ImageFormat | None, head: bytes) -> ImageFormat:
    """The format ``render(..., fmt)`` wrote, given the output's first bytes. Only ``fmt``
    None ("JPEG, or PNG if the result has visible alpha") needs them, and only to tell
    those two apart: PNG's signature, else JPEG."""
    if fmt is not None:
        return fmt
    return ImageFormat.PNG if head.startswith(PNG_SIGNATURE) else ImageFormat.JPEG


def render(
    path: Path,
    probe: ProbeResult,
    options: RenderOptions,
    fmt: ImageFormat | None,
    watermark_path: Path | None = None,
    deadline: Deadline | None = None,
    *,
    planned: Plan | None = None,
    render_source: bool = False,
) -> Output:
    """Render one output. ``fmt`` None means "JPEG, or PNG if the result has visible
    alpha" (format=auto for a client that takes neither AVIF nor WebP). ``planned``: the
    plan made from the original's size, when ``path`` is its render source
    (``render_source`` True) rather than the original."""
    with vips_errors():
        mark = load_watermark(watermark_path) if watermark_path is not None else None
    deadline = deadline or Deadline(None)
    return run(
        planned or plan(options, probe.upright_size),
        _File(path, probe, fast_shrink=not render_source, deadline=deadline),
        fmt,
        deadline,
        fast=True,
        watermark=mark,
    )
