"""quality=auto: the fewest bytes that keep a level's perceptual target, found cheaply.

The levels (domain/render_options.py ``AutoQuality``) are judged by SSIMULACRA2
(engine/ssimulacra2.py: the published algorithm in numpy, within 0.02 of the
``ssimulacra2`` package). Scoring the whole image costs about one and a half encodes
(the encode's decode and the score, plus preparing the original once), so where a
prediction was fitted for the output format (``PREDICTIONS``: WebP, AVIF and JPEG) a
sample predicts the quality, the whole image is encoded once there, and that encode's
own sample tiles decide whether the whole image needs checking:

- **The sample.** 25 tiles of 64x64 pixels, one at the centre of each cell of a 5x5 grid
  over the image, joined into one 320x320 image (a fifth of an 800x600 image; an image
  under twice that is its own sample, and gets the exhaustive search below). Tiles sit
  on 16-pixel boundaries, so the encoder cuts them into the blocks it cuts the whole
  image into.
- **The trials.** The sample is encoded at the level's usual quality (WebP at effort 0:
  ``encode_at(..., trial=True)``) and scored against itself unencoded. The next trial
  jumps by the score's gap to the threshold over its slope (the level's after one
  trial); once two trials bracket the threshold, the line between them places the
  answer. At most ``MAX_TRIALS`` (two: each costs about a fifth of an encode, mostly the
  score).
- **The prediction.** The sample's crossing of the prediction's threshold plus its
  ``offset`` quality steps. The sample scores above the whole image by an amount that
  grows with the score's slope per quality step (flat-scoring photos, text and night
  scenes, are near 0; steep ones near 3-4 points); a threshold plus a fixed number of
  quality steps is a line through that. ``bench/quality_auto_bench.py --fit`` chooses,
  per format and level, the pair with the fewest median bytes at which the whole
  image's encode keeps the target on every corpus photo.
- **The gate.** The whole image is encoded at the prediction (real effort: a profile's,
  or a render's lower one, each with predictions fitted for it), and the
  sample's tiles are cut from that encode and scored against the original's: the encode
  stands when they keep the prediction's ``gate`` (the lowest any corpus photo kept at
  its prediction, a point or three above the target). That costs one decode and a
  fifth of a score, where checking the whole image cost a score and a half. Tiles cut
  from the real encode see what a sample encoded alone cannot: how the encoder spends
  bits over the whole picture (the synthetic image of tests/unit/test_auto_quality.py
  scores 11 points lower whole than as a sample; its own tiles show it, and it is
  checked). So a photo's output keeps its target by the fit (every corpus photo, and
  the scikit-image photos the tests use, do), not by a whole-image score of its own.
- **The check**, when the gate is missed: the whole image scored from that encode; a
  pass is the answer, a miss searches on as the exhaustive search does (up by the gap
  over the slope, then between the nearest failing and passing qualities), at most
  ``MAX_CHECKS`` encodes; where even the ceiling misses, the ceiling is kept and
  ``AutoResult.met`` says so.

Formats without a prediction (JPEG XL) and images that are their own sample get the
exhaustive search, where every output is an encode scored on the whole image
(``_sampled_then_checked``: a 3x3 sample of 96x96 tiles
against the level's threshold, the target plus the upper end of that sample's bias, then
the whole image encoded and scored, moved up while it misses the target, down while it
leaves ``ROOM`` steps, at most ``MAX_CHECKS`` encodes): the lowest passing quality, at
6-9 encodes' CPU.

``auto:best`` is different in kind: the design's quality floor, SSIM above 0.95 against
the resized source (``floor_ssim``, computed as scikit-image's ``structural_similarity``
computes it: 7x7 window, mean over R, G, B). Its search uses the sample's SSIM, then
checks the whole output and steps up until it passes; where no quality passes (a noisy
source, whose noise no lossy encoder keeps) it says so (``AutoResult.met`` False) and
keeps the encoder's best.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import pyvips

from imgpipe.domain.formats import FORMATS
from imgpipe.domain.media import ImageFormat
from imgpipe.domain.render_options import AutoQuality
from imgpipe.engine import ssimulacra2

if TYPE_CHECKING:
    import numpy as np


class Encoder(Protocol):
    def __call__(self, image: Any, quality: int, /, trial: bool = False) -> bytes:
        """``image`` at ``quality``; ``trial``: a search's trial, speed before bytes."""
        ...


@dataclass(frozen=True, slots=True)
class Level:
    start: int  # the quality the search tries first: the level's median on the corpus
    # The sample's SSIMULACRA2 (or, for best, the SSIM) the exhaustive search clears on its
    # 3x3 sample: the target plus the upper end of that sample's bias, so its first
    # whole-image check usually passes.
    threshold: float
    target: float  # what the bench holds the output to (SSIMULACRA2; SSIM for best)
    ceiling: int  # the highest quality tried: good never costs more than q85, its yardstick
    slope: float = 1.0  # SSIMULACRA2 points per quality step near the target, corpus median


@dataclass(frozen=True, slots=True)
class Prediction:
    threshold: float  # the 5x5 sample's SSIMULACRA2 to clear
    offset: int  # quality steps added to the sample's crossing of the threshold
    # The SSIMULACRA2 the same tiles, cut from the whole image's encode at the predicted
    # quality, must keep for that encode to stand unchecked: the lowest any corpus photo
    # kept at its prediction. Below it the whole image is checked.
    gate: float


# SSIMULACRA2's scale: 90 visually lossless, 70 high quality, 50 medium. good: not told
# from quality 85 at normal viewing (q85 scores 77 median on the corpus); eco: fewer
# bytes, artefacts visible side by side.
LEVELS = {
    AutoQuality.ECO: Level(start=60, threshold=65.8, target=60.0, ceiling=80, slope=0.5),
    AutoQuality.GOOD: Level(start=76, threshold=73.6, target=70.0, ceiling=85, slope=1.0),
    AutoQuality.BEST: Level(start=88, threshold=0.95, target=0.95, ceiling=100),
}
# Per output format and level: the fewest bytes at which the prediction keeps the target
# on every corpus photo, and the gate every one of them keeps
# (bench/quality_auto_bench.py --fit). A format without one gets the exhaustive search.
PREDICTIONS = {
    (ImageFormat.WEBP, AutoQuality.ECO): Prediction(threshold=69.0, offset=-6, gate=62.0),
    (ImageFormat.WEBP, AutoQuality.GOOD): Prediction(threshold=68.0, offset=6, gate=72.9),
    (ImageFormat.AVIF, AutoQuality.ECO): Prediction(threshold=64.5, offset=-3, gate=65.8),
    (ImageFormat.AVIF, AutoQuality.GOOD): Prediction(threshold=67.5, offset=5, gate=73.0),
    (ImageFormat.JPEG, AutoQuality.ECO): Prediction(threshold=64.0, offset=1, gate=64.4),
    (ImageFormat.JPEG, AutoQuality.GOOD): Prediction(threshold=76.5, offset=-6, gate=72.6),
}
# The same for renders' encodes (``fast``: the registry's fast_options, a lower effort):
# fitted apart (bench/quality_auto_bench.py --fit --fast), since a lower effort scores
# differently at one quality. A format whose renders encode as its profiles do (JPEG)
# uses PREDICTIONS.
RENDER_PREDICTIONS = {
    (ImageFormat.WEBP, AutoQuality.ECO): Prediction(threshold=69.0, offset=-10, gate=63.0),
    (ImageFormat.WEBP, AutoQuality.GOOD): Prediction(threshold=69.0, offset=5, gate=72.2),
    (ImageFormat.AVIF, AutoQuality.ECO): Prediction(threshold=64.5, offset=-3, gate=64.0),
    (ImageFormat.AVIF, AutoQuality.GOOD): Prediction(threshold=67.5, offset=7, gate=72.4),
}
QUALITY_RANGE = (20, 100)
MAX_TRIALS = 2  # trial encodes of the predicting sample (good, eco)
EXHAUSTIVE_TRIALS = 3  # the exhaustive search's (formats without a prediction)
ROOM = 2  # quality steps of room below a passing encode worth another check
MAX_CHECKS = 4  # encodes of the whole image, each scored (good, eco)
AGREEMENT = 0.1  # engine/ssimulacra2.py against the ssimulacra2 package: within 0.02 seen
MAX_BEST_STEPS = 4  # best: whole-image checks stepping up from the sample's answer

# The predicting sample (good and eco): 25 tiles of 64x64 (a fifth of 800x600).
# More, smaller tiles see more of the image than 9 of 96x96 for about the same pixels:
# the sample's bias spread over the corpus at good fell from 3.4 to 3.0 points.
TILE = 64  # multiples of 16: whole macroblocks (WebP), superblock halves (AV1)
GRID = 5  # TILE * GRID >= 256: six SSIMULACRA2 scales, as the whole image has
# The exhaustive searches' sample (best; good and eco in formats without a fit).
EXHAUSTIVE_TILE = 96
EXHAUSTIVE_GRID = 3


@dataclass(frozen=True, slots=True)
class AutoResult:
    data: bytes
    quality: int  # the encoder quality chosen
    met: bool  # the level's target was reached (False: the encoder's best, said per image)
    probes: int  # encodes tried, the final one included


def encode_auto(
    image: Any, fmt: ImageFormat, level: AutoQuality, encode_at: Encoder, fast: bool = False
) -> AutoResult:
    """The smallest encoding of ``image`` (one frame) that keeps ``level``; ``fast``:
    ``encode_at`` encodes with the format's fast_options (renders)."""
    spec = LEVELS[level]
    # Every step reads these pixels (the sample, each encode, a check): evaluate them once.
    image = image.copy_memory()
    if level is AutoQuality.BEST:
        sample, whole = make_sample(image, EXHAUSTIVE_GRID, EXHAUSTIVE_TILE)
        return _encode_best(image, sample, whole, encode_at)
    prediction = predictions(fmt, fast).get((fmt, level))
    if prediction is None:  # no fitted prediction: the lowest passing quality
        return _sampled_then_checked(
            image, spec, encode_at, EXHAUSTIVE_GRID, EXHAUSTIVE_TILE, EXHAUSTIVE_TRIALS
        )
    return _sampled_then_checked(image, spec, encode_at, GRID, TILE, MAX_TRIALS, prediction)


def predictions(fmt: ImageFormat, fast: bool) -> dict[tuple[ImageFormat, AutoQuality], Prediction]:
    """The predictions fitted for the encoder settings in use."""
    return RENDER_PREDICTIONS if fast and FORMATS[fmt].fast_options else PREDICTIONS


class _Trials:
    """The sample encoded at a trial's quality (``trial``: the lowest effort) and scored
    against itself."""

    def __init__(self, sample: Any, encode_at: Encoder) -> None:
        self.sample, self.encode_at = sample, encode_at
        self.reference = ssimulacra2.Reference(sample)
        self.count = 0

    def __call__(self, quality: int) -> float:
        self.count += 1
        data = self.encode_at(self.sample, quality, trial=True)
        return self.reference.score_pixels(ssimulacra2.decoded_pixels(data))


def _sampled_then_checked(
    image: Any,
    spec: Level,
    encode_at: Encoder,
    grid: int,
    tile: int,
    max_trials: int,
    prediction: Prediction | None = None,
) -> AutoResult:
    """The sample's trials, then the whole image. Without a prediction (the exhaustive
    search): checked from the trials' crossing of ``spec.threshold`` (``_checked``). With
    one: encoded at the trials' crossing of its threshold moved by its offset, and that
    encode stands when its own tiles (the sample's, cut from it) keep its gate, else it
    is checked from there. An image that is its own sample is checked from the start."""
    sample, whole = make_sample(image, grid, tile)
    if whole:
        return _checked(image, spec, spec.start, encode_at)
    trials = _Trials(sample, encode_at)
    if prediction is None:
        quality, _ = search(trials, spec, max_trials)
        found = _checked(image, spec, quality, encode_at)
    else:
        crossing, _ = search(trials, replace(spec, threshold=prediction.threshold), max_trials)
        quality = min(spec.ceiling, max(QUALITY_RANGE[0], crossing + prediction.offset))
        data = encode_at(image, quality)
        tiles = sample_pixels(ssimulacra2.decoded_pixels(data), grid, tile)
        if trials.reference.score_pixels(tiles) >= prediction.gate:
            found = AutoResult(data, quality, True, 1)
        else:
            found = _checked(image, spec, quality, encode_at, descend=False, first=data)
    return AutoResult(found.data, found.quality, found.met, found.probes + trials.count)


def _checked(
    image: Any,
    spec: Level,
    quality: int,
    encode_at: Encoder,
    descend: bool = True,
    first: bytes | None = None,
) -> AutoResult:
    """The whole image encoded from ``quality`` (``first``: that encode, already made)
    and scored, then moved (up while it misses the target, down while the score leaves
    ROOM steps of room) until the lowest passing quality sits next to a failing one, in
    at most MAX_CHECKS encodes; with ``descend`` False a first encode that passes is the
    answer. The answer is always an encode that was scored."""
    reference = ssimulacra2.Reference(image)
    need = spec.target + AGREEMENT
    low, high = QUALITY_RANGE[0], spec.ceiling
    quality = min(high, max(low, quality))
    encodes: dict[int, tuple[float, bytes]] = {}
    for _ in range(MAX_CHECKS):
        data = first if first is not None and not encodes else encode_at(image, quality)
        encodes[quality] = (reference.score_pixels(ssimulacra2.decoded_pixels(data)), data)
        if not descend and len(encodes) == 1 and encodes[quality][0] >= need:
            break  # the prediction passed: final (a search below it costs a check each)
        scores = {q: score for q, (score, _) in encodes.items()}
        following = _next(scores, need, low, high, spec.slope)
        if following is None or following in encodes:
            break
        quality = following
    passed = [q for q, (score, _) in encodes.items() if score >= need]
    if passed:
        best = min(passed)
        return AutoResult(encodes[best][1], best, True, len(encodes))
    if high in encodes:
        return AutoResult(encodes[high][1], high, False, len(encodes))
    return AutoResult(encode_at(image, high), high, False, len(encodes) + 1)


def search(
    trial: Callable[[int], float], spec: Level, max_trials: int = MAX_TRIALS
) -> tuple[int, bool]:
    """The lowest quality up to the level's ceiling whose trial (an SSIMULACRA2 score)
    clears its threshold, in at most ``max_trials`` trials (see ``_next``); where the
    trials leave a gap, the line between them places the answer."""
    low, high = QUALITY_RANGE[0], spec.ceiling
    scores: dict[int, float] = {}
    quality: int | None = spec.start
    for _ in range(max_trials):
        assert quality is not None
        scores[quality] = trial(quality)
        quality = _next(scores, spec.threshold, low, high, spec.slope)
        if quality is None or quality in scores:
            break
    passed = [q for q, s in scores.items() if s >= spec.threshold]
    if not passed:  # where the last jump pointed (the whole image's checks go on from it)
        return (high if quality is None else quality), False
    above = min(passed)
    failed = [q for q, s in scores.items() if s < spec.threshold and q < above]
    if not failed:
        return above, True
    below = max(failed)
    return _crossing(below, scores[below], above, scores[above], spec.threshold), True


def _next(
    scores: dict[int, float], threshold: float, low: int, high: int, slope: float
) -> int | None:
    """The quality to try after ``scores`` (quality: score), or None when the lowest
    passing quality is known: between the nearest trials either side of the threshold
    (on the line through them), else a jump by the gap over the slope of the two
    nearest trials (``slope`` after one)."""
    passed = [q for q, s in scores.items() if s >= threshold]
    above = min(passed, default=None)
    failed = [q for q, s in scores.items() if s < threshold and (above is None or q < above)]
    below = max(failed, default=None)
    if above is not None and below is not None:
        if above - below <= 1:
            return None
        return _between(below, scores[below], above, scores[above], threshold)
    nearest = above if above is not None else below
    assert nearest is not None
    if len(scores) >= 2:
        other = sorted(scores, key=lambda q: abs(q - nearest))[1]
        slope = max(slope / 2, (scores[nearest] - scores[other]) / (nearest - other))
    gap = (threshold - scores[nearest]) / slope
    if above is not None:  # passing everywhere tried: down, by whole steps of room
        step = math.floor(-gap)
        return None if step < ROOM or above == low else max(low, above - min(step, 15))
    if below == high:
        return None
    return min(high, nearest + min(15, max(1, math.ceil(gap))))


def _between(low: int, low_score: float, high: int, high_score: float, threshold: float) -> int:
    """The quality where the line through two trials crosses ``threshold``, rounded up,
    strictly between them."""
    return min(high - 1, _crossing(low, low_score, high, high_score, threshold))


def _crossing(low: int, low_score: float, high: int, high_score: float, threshold: float) -> int:
    """The quality where the line through two trials crosses ``threshold``, rounded up,
    above ``low`` and at most ``high``."""
    if high_score <= low_score:
        return high
    crossing = low + (threshold - low_score) * (high - low) / (high_score - low_score)
    return min(high, max(low + 1, math.ceil(round(crossing, 6))))


def _encode_best(image: Any, sample: Any, whole: bool, encode_at: Encoder) -> AutoResult:
    """auto:best: a bisection on the sample's SSIM, then the whole image checked."""
    spec = LEVELS[AutoQuality.BEST]
    reference = rgb_array(sample)
    encodes: dict[int, bytes] = {}

    def trial(quality: int) -> float:
        data = encode_at(sample, quality)
        encodes[quality] = data
        return floor_ssim(reference, rgb_array(pyvips.Image.new_from_buffer(data, "")))

    quality, met = _bisect(trial, spec.start, spec.threshold, spec.ceiling)
    if whole:
        return AutoResult(encodes[quality], quality, met, len(encodes))
    return _check_best(image, encode_at, quality, len(encodes))


def _bisect(
    trial: Callable[[int], float], start: int, threshold: float, ceiling: int
) -> tuple[int, bool]:
    """The lowest quality up to ``ceiling`` whose trial exceeds ``threshold``, within four
    trials: a step of 8 from ``start`` until bracketed, then halving."""
    low_q, high_q = QUALITY_RANGE[0], ceiling
    passed: int | None = None  # lowest quality seen to pass
    failed: int | None = None  # highest quality seen to fail
    quality, step = start, 8
    for _ in range(4):
        if trial(quality) > threshold:
            passed = quality
        else:
            failed = quality
        if passed is not None and failed is not None:
            step = max(1, (passed - failed) // 2)
            if passed - failed <= 1:
                break
            quality = failed + step
        elif passed is not None:
            if passed == low_q:
                break
            quality = max(low_q, passed - step)
        else:
            if failed == high_q:
                break
            quality = min(high_q, quality + step)
    if passed is None:
        return high_q, False
    return passed, True


def _check_best(image: Any, encode_at: Encoder, quality: int, tried: int) -> AutoResult:
    """auto:best on the whole image: the sample's answer, stepped up until SSIM > 0.95."""
    reference = rgb_array(image)
    high = QUALITY_RANGE[1]
    checks = 0
    data = b""
    while True:
        data = encode_at(image, quality)
        tried += 1
        checks += 1
        score = floor_ssim(reference, rgb_array(pyvips.Image.new_from_buffer(data, "")))
        if score > LEVELS[AutoQuality.BEST].threshold:
            return AutoResult(data, quality, True, tried)
        if quality >= high or checks >= MAX_BEST_STEPS:
            break
        quality = min(high, quality + 4 if checks < MAX_BEST_STEPS - 1 else high)
    if quality < high:
        data, quality = encode_at(image, high), high
        tried += 1
    return AutoResult(data, quality, False, tried)


# --- the sample ---------------------------------------------------------------------------


def make_sample(image: Any, grid: int = GRID, tile: int = TILE) -> tuple[Any, bool]:
    """``grid`` x ``grid`` tiles from a grid over the image joined into one image, or the
    image itself when it is small; True when it is the image itself."""
    side = grid * tile
    if image.width * image.height <= 2 * side * side or min(image.width, image.height) < side:
        return image, True
    # Cut in numpy: libvips' crops and join took 4-9 ms for an 800x600 image, a tenth of
    # the predicted search's CPU.
    pixels = image.numpy()
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    joined = sample_pixels(pixels, grid, tile)
    return pyvips.Image.new_from_array(joined, interpretation=image.interpretation), False


def sample_pixels(pixels: np.ndarray, grid: int = GRID, tile: int = TILE) -> np.ndarray:
    """The sample's tiles of an image's (height, width, bands) array, joined: tile
    (row, col) sits on 16-pixel boundaries at the centre of cell (row, col) of a grid x
    grid grid over the image."""
    import numpy as np

    height, width = pixels.shape[:2]
    joined = np.empty((grid * tile, grid * tile, *pixels.shape[2:]), dtype=pixels.dtype)
    for row in range(grid):
        for col in range(grid):
            x = int((col + 0.5) * width / grid - tile / 2) // 16 * 16
            y = int((row + 0.5) * height / grid - tile / 2) // 16 * 16
            joined[row * tile : (row + 1) * tile, col * tile : (col + 1) * tile] = pixels[
                y : y + tile, x : x + tile
            ]
    return joined


# --- pixels ------------------------------------------------------------------------------


def _srgb(image: Any) -> Any:
    """The first frame as 3-band 8-bit sRGB, alpha flattened onto white."""
    if image.get_typeof("page-height") and image.get("page-height") < image.height:
        image = image.crop(0, 0, image.width, image.get("page-height"))
    if image.hasalpha():
        image = image.flatten(background=[255, 255, 255])
    if image.interpretation != "srgb" or image.bands != 3:
        image = image.colourspace("srgb")
    return image.cast("uchar")


def rgb_array(image: Any) -> np.ndarray:
    """The first frame as 8-bit sRGB values (alpha flattened onto white) in float32."""
    import numpy as np  # only quality=auto needs it; not imported on every start-up

    pixels = _srgb(image)
    return np.asarray(pixels.numpy(), dtype=np.float32).reshape(pixels.height, pixels.width, 3)


# --- the floor ----------------------------------------------------------------------------


def floor_ssim(reference: np.ndarray, candidate: np.ndarray, window: int = 7) -> float:
    """Mean SSIM over R, G and B with a ``window`` x ``window`` box, sample covariances
    and the border half-window left out: scikit-image's ``structural_similarity``
    defaults (which bench/benchlib/quality.py uses), without scikit-image."""
    import numpy as np

    if min(reference.shape[0], reference.shape[1]) < window:
        return 1.0
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    n = window * window
    norm = n / (n - 1)
    scores = []
    for channel in range(3):
        a = reference[:, :, channel].astype(np.float64)
        b = candidate[:, :, channel].astype(np.float64)
        mu_a, mu_b = _box(a, window), _box(b, window)
        var_a = norm * (_box(a * a, window) - mu_a * mu_a)
        var_b = norm * (_box(b * b, window) - mu_b * mu_b)
        cov = norm * (_box(a * b, window) - mu_a * mu_b)
        ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
            (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
        )
        scores.append(float(ssim.mean()))
    return sum(scores) / len(scores)


def _box(x: np.ndarray, window: int) -> np.ndarray:
    """Means of every full ``window`` x ``window`` box (the 'valid' part only)."""
    import numpy as np

    total = np.cumsum(np.cumsum(np.pad(x, ((1, 0), (1, 0))), axis=0), axis=1)
    w = window
    sums = total[w:, w:] - total[:-w, w:] - total[w:, :-w] + total[:-w, :-w]
    return sums / (w * w)  # type: ignore[no-any-return]
