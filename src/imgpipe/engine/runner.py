"""The one runner: executes a plan (engine/plan.py) on decoded pixels, step by named step.

The worker (every profile from one base decode), the batch CLI and on-demand renders all
run plans through here; what differs is only where the pixels come from (a ``Pixels``:
the worker's base decode, or a file decoded straight to the planned size) and whether a
client waits (``fast``: encoder settings for latency). The deadline is checked between
steps. An animation kept as one runs each step on every frame, with one crop window for
all of them (the first frame's), so the subject does not jump between frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyvips

from imgpipe.domain.errors import CorruptImage, ImgpipeError
from imgpipe.domain.media import ANIMATED_OUTPUTS, ImageFormat
from imgpipe.domain.render_options import DEFAULT_QUALITY, Crop
from imgpipe.engine import faces
from imgpipe.engine.deadline import Deadline
from imgpipe.engine.encode import encode, encode_detailed
from imgpipe.engine.errors import vips_errors
from imgpipe.engine.plan import Plan
from imgpipe.engine.steps import adjust, transform
from imgpipe.engine.steps.alpha import prepare_alpha, visible_alpha
from imgpipe.engine.steps.crop import crop_window, cut, region
from imgpipe.engine.steps.pad import pad
from imgpipe.engine.steps.resize import resize
from imgpipe.engine.steps.watermark import apply_watermark


class Pixels(Protocol):
    """Where a plan's pixels come from."""

    animated: bool
    source_bytes: int  # the encoded source's size

    def upright(self, size: tuple[int, int], *, all_frames: bool) -> Any:
        """The whole upright source at exactly ``size`` (per frame), 8-bit sRGB."""

    def faces_at(self, size: tuple[int, int]) -> list[faces.Box] | None:
        """Faces already found, in the coordinates of the source at ``size``; None: find
        them on the pixels the crop sees."""


@dataclass(frozen=True, slots=True)
class Output:
    format: ImageFormat
    width: int
    height: int
    frames: int
    data: bytes
    # Where the crop fell in the image it cut and which faces were found there (the
    # face-crop measurement in bench/); None and () when there was no crop.
    crop_window: tuple[int, int, int, int] | None = None
    faces: tuple[faces.Box, ...] = ()
    # The encoder quality used (None: lossless) and, for quality=auto, whether the level's
    # target was met (False: the encoder's best; auto:best found no quality above its floor).
    quality: int | None = None
    target_met: bool | None = None


@dataclass
class _State:
    """What one run carries between steps and frames."""

    plan: Plan
    pixels: Pixels
    watermark: Any | None
    window: tuple[int, int, int, int] | None = None
    found: list[faces.Box] = field(default_factory=list)


def keeps_animation(pixels: Pixels, plan: Plan, fmt: ImageFormat | None) -> bool:
    """An animated source stays animated when asked (the default) and the format holds it."""
    return pixels.animated and plan.options.animated.value == "keep" and fmt in ANIMATED_OUTPUTS


def run(
    plan: Plan,
    pixels: Pixels,
    fmt: ImageFormat | None,
    deadline: Deadline,
    *,
    fast: bool = False,
    watermark: Any | None = None,
) -> Output:
    """Run ``plan`` and encode in ``fmt`` (None: JPEG, or PNG where alpha is visible, for a
    client that takes neither AVIF nor WebP). ``watermark``: the loaded mark, when the
    options name one."""
    try:
        return _run(plan, pixels, fmt, deadline, fast, watermark)
    except ImgpipeError as exc:
        # libvips stopped by the deadline's kill hook (engine/deadline.py) reports only
        # that the image was killed, which vips_errors cannot tell from a failure.
        if deadline.expired and isinstance(exc.__cause__, pyvips.Error):
            raise deadline.error("encode") from exc
        raise


def _run(
    plan: Plan,
    pixels: Pixels,
    fmt: ImageFormat | None,
    deadline: Deadline,
    fast: bool,
    watermark: Any | None,
) -> Output:
    with vips_errors():
        animated = keeps_animation(pixels, plan, fmt)
        deadline.check("decode")
        image = pixels.upright(plan.decode, all_frames=animated)
        state = _State(plan, pixels, watermark)
        middle = [s for s in plan.steps if s not in ("decode", "alpha", "encode")]
        if animated and middle:
            height = image.get("page-height")
            frames = [
                image.crop(0, i * height, image.width, height)
                for i in range(image.height // height)
            ]
            done = [
                _steps(frame, middle, state, deadline if i == 0 else None)
                for i, frame in enumerate(frames)
            ]
            image = pyvips.Image.arrayjoin(done, across=1).copy()
            image.set_type(pyvips.GValue.gint_type, "page-height", done[0].height)
        else:
            image = _steps(image, middle, state, deadline)
        out_format = fmt or (ImageFormat.PNG if visible_alpha(image) else ImageFormat.JPEG)
        image = prepare_alpha(image, out_format, plan.options.background)
        deadline.check("encode")
        image = deadline.watch(image)
        quality = plan.options.quality if plan.options.quality is not None else DEFAULT_QUALITY
        try:
            encoded = encode_detailed(image, out_format, quality, fast=fast, animated=animated)
        except pyvips.Error:
            if animated and not deadline.expired:
                _blame_a_broken_source(pixels, plan)
            raise
        data = encoded.data
        frame_height = image.get("page-height") if animated else image.height
        if animated and isinstance(quality, int) and (image.width, frame_height) == plan.source:
            data = _no_larger_than_source(image, out_format, quality, data, pixels.source_bytes)
        return Output(
            out_format,
            image.width,
            frame_height,
            image.height // frame_height,
            data,
            state.window,
            tuple(state.found),
            encoded.quality,
            encoded.target_met,
        )


def _blame_a_broken_source(pixels: Pixels, plan: Plan) -> None:
    """Raise ``CorruptImage`` if the animation cannot even be decoded.

    Every frame is decoded lazily, so broken frame data fails inside the encoder. libvips
    keeps one error text for the whole process, and another thread failing at the same
    moment can take it, leaving only "unable to call webpsave_buffer": an engine failure
    in appearance. Decoding alone, into nothing (``avg`` holds no frame), tells whose
    fault it was. Only a failed encode pays for this."""
    try:
        pixels.upright(plan.decode, all_frames=True).avg()
    except (pyvips.Error, CorruptImage) as exc:
        raise CorruptImage("The image data is corrupt or truncated.") from exc


# An animation re-encoded at its own size must not grow. A source compressed harder than
# the asked quality is re-encoded at the highest quality (down to this floor) that is no
# larger: about the source's own compression, so about its own look.
ANIMATION_QUALITY_FLOOR = 5


def _no_larger_than_source(
    image: Any, fmt: ImageFormat, quality: int, data: bytes, source_bytes: int
) -> bytes:
    if len(data) <= source_bytes:
        return data
    low, high = ANIMATION_QUALITY_FLOOR, quality - 1
    best = data
    while low <= high:  # bisect for the highest quality that fits
        middle = (low + high) // 2
        candidate = encode(image, fmt, middle, animated=True)
        if len(candidate) <= source_bytes:
            best, low = candidate, middle + 1
        else:
            best, high = min(best, candidate, key=len), middle - 1
    return best


def _steps(image: Any, names: list[str], state: _State, deadline: Deadline | None) -> Any:
    for name in names:
        if deadline is not None:
            deadline.check(name)
        image = _STEPS[name](image, state)
    return image


def _region(image: Any, state: _State) -> Any:
    assert state.plan.region is not None
    return region(image, state.plan.region)


def _resize(image: Any, state: _State) -> Any:
    return resize(image, state.plan.resized)


def _rotate(image: Any, state: _State) -> Any:
    options = state.plan.options
    return transform.rotate(image, options.rotate, state.plan.rotated, options.background)


def _flip(image: Any, state: _State) -> Any:
    return transform.flip(image, state.plan.options.flip)


def _crop(image: Any, state: _State) -> Any:
    """Cut the cover crop; the first frame chooses the window, the others reuse it."""
    if state.window is not None:
        return cut(image, state.window)
    options = state.plan.options
    hint = None  # faces are looked for only when the crop keeps faces: detection is costly
    if options.crop is Crop.FACE and not {"region", "rotate", "flip"} & set(state.plan.steps):
        hint = state.pixels.faces_at((image.width, image.height))
    cropped, state.window, state.found = crop_window(
        image, state.plan.cropped, options.crop, options.focal, hint
    )
    return cropped


def _blur(image: Any, state: _State) -> Any:
    return adjust.blur(image, state.plan.options.blur)


def _sharpen(image: Any, state: _State) -> Any:
    return adjust.sharpen(image, state.plan.options.sharpen)


def _adjust(image: Any, state: _State) -> Any:
    options = state.plan.options
    return adjust.brightness_contrast(image, options.brightness, options.contrast)


def _gray(image: Any, state: _State) -> Any:
    return adjust.gray(image, state.plan.options.gray)


def _pad(image: Any, state: _State) -> Any:
    return pad(image, state.plan.output, state.plan.options.background)


def _watermark(image: Any, state: _State) -> Any:
    spec = state.plan.options.watermark
    if spec is None or state.watermark is None:
        return image
    return apply_watermark(image, state.watermark, spec)


_STEPS: dict[str, Callable[[Any, _State], Any]] = {
    "region": _region,
    "resize": _resize,
    "rotate": _rotate,
    "flip": _flip,
    "crop": _crop,
    "blur": _blur,
    "sharpen": _sharpen,
    "adjust": _adjust,
    "gray": _gray,
    "pad": _pad,
    "watermark": _watermark,
}
