"""quality=auto: the fewest bytes that keep a level's perceptual target, found cheaply.

The levels (domain/render_options.py ``AutoQuality``) are judged by SSIMULACRA2, a
perceptual metric that takes about a second per 800x600 image in Python: too slow to run
per render, so it judges only in the bench (bench/quality_auto_bench.py). Here a fast
predictor stands in for it:

- **The sample.** Up to 48 tiles of 32x32 pixels, one at the centre of each cell of a grid
  over the image, joined into one small image (about a tenth of an 800x600 image; an
  image under four times that is its own sample). The encoder compresses the sample at a
  trial quality much as it compresses those tiles in the whole image.
- **The predictor.** ``predict_ssimulacra2`` turns the sample and its encoded copy into an
  estimate of SSIMULACRA2: the loss of SSIM (Gaussian window, sigma 1.5) on luma at three
  scales, pooled as a mean and as a 4-norm (SSIMULACRA2's own two poolings), plus the
  loss on each chroma plane at half size; a linear model fitted by least squares to
  SSIMULACRA2 over 11 corpus photos x 16 WebP qualities (``PREDICTORS``).
- **The search.** From the level's usual quality, a few trial encodes of the sample
  (``MAX_PROBES``) bracket and then halve the interval to the lowest quality whose
  predicted score clears the level's threshold, then one encode of the whole image.

A level's threshold is its SSIMULACRA2 target plus the predictor's worst under-estimate
near that target over the corpus (``LEVELS``), so every corpus photo meets its level's
target as SSIMULACRA2 itself judges it. ``auto:best`` is different in kind: the design's
quality floor, SSIM above 0.95 against the resized source (``floor_ssim``, computed as
scikit-image's ``structural_similarity`` computes it: 7x7 window, mean over R, G, B). Its
search uses the sample's SSIM, then checks the whole output and steps up until it passes;
where no quality passes (a noisy source, whose noise no lossy encoder keeps) it says so
(``AutoResult.met`` False) and keeps the encoder's best.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyvips

from imgpipe.domain.media import ImageFormat
from imgpipe.domain.render_options import AutoQuality

if TYPE_CHECKING:
    import numpy as np

Encoder = Callable[[Any, int], bytes]


@dataclass(frozen=True, slots=True)
class Level:
    start: int  # the quality the search tries first: the level's median on the corpus
    threshold: float  # the predicted SSIMULACRA2 (or, for best, the SSIM) to clear
    target: float  # what the bench holds the output to (SSIMULACRA2; SSIM for best)
    ceiling: int  # the highest quality tried: good never costs more than q85, its yardstick


# SSIMULACRA2's scale: 90 visually lossless, 70 high quality, 50 medium. good: not told
# from quality 85 at normal viewing (q85 scores 77 median on the corpus); eco: fewer
# bytes, artefacts visible side by side. Thresholds: target + the calibration margin.
LEVELS = {
    AutoQuality.ECO: Level(start=60, threshold=63.3, target=60.0, ceiling=80),
    AutoQuality.GOOD: Level(start=78, threshold=72.9, target=70.0, ceiling=85),
    AutoQuality.BEST: Level(start=88, threshold=0.95, target=0.95, ceiling=100),
}
QUALITY_RANGE = (20, 100)
MAX_PROBES = 4  # trial encodes of the sample (good, eco); best adds checks of the whole
MAX_BEST_STEPS = 4  # best: whole-image checks stepping up from the sample's answer

TILE = 64  # multiples of 16: whole macroblocks (WebP), superblock halves (AV1)
TILES = 24

# Per level: SSIMULACRA2 ~ intercept - sum(weight * feature), features in ``features``'
# order, fitted on the corpus photos' samples near the level's target
# (bench/quality_auto_bench.py --calibrate prints them).
PREDICTORS: dict[AutoQuality, tuple[float, tuple[float, ...]]] = {
    AutoQuality.ECO: (83.37, (245.52, 187.80, -1054.06, -253.72, 3211.25, -44.52, -15.91, 61.53)),
    AutoQuality.GOOD: (85.43, (184.83, 152.48, -712.75, -296.04, 2958.99, 104.08, -25.66, 108.61)),
}


@dataclass(frozen=True, slots=True)
class AutoResult:
    data: bytes
    quality: int  # the encoder quality chosen
    met: bool  # the level's target was reached (False: the encoder's best, said per image)
    probes: int  # encodes tried, the final one included


def encode_auto(image: Any, fmt: ImageFormat, level: AutoQuality, encode_at: Encoder) -> AutoResult:
    """The smallest encoding of ``image`` (one frame) that keeps ``level``."""
    spec = LEVELS[level]
    sample, whole = make_sample(image)
    reference = rgb_array(sample)
    encodes: dict[int, bytes] = {}

    def trial(quality: int) -> float:
        data = encode_at(sample, quality)
        encodes[quality] = data
        decoded = rgb_array(pyvips.Image.new_from_buffer(data, ""))
        if level is AutoQuality.BEST:
            return floor_ssim(reference, decoded)
        return predict_ssimulacra2(level, reference, decoded)

    quality, met = _search(trial, spec.start, spec.threshold, spec.ceiling)
    probes = len(encodes)
    if whole:  # the sample was the image: its encode is the answer
        return AutoResult(encodes[quality], quality, met, probes)
    if level is AutoQuality.BEST:
        return _check_best(image, encode_at, quality, probes)
    return AutoResult(encode_at(image, quality), quality, met, probes + 1)


def _search(
    trial: Callable[[int], float], start: int, threshold: float, ceiling: int
) -> tuple[int, bool]:
    """The lowest quality up to ``ceiling`` whose trial clears ``threshold``, within
    MAX_PROBES trials: a step of 8 from ``start`` until bracketed, then halving."""
    low_q, high_q = QUALITY_RANGE[0], ceiling
    passed: int | None = None  # lowest quality seen to pass
    failed: int | None = None  # highest quality seen to fail
    quality, step = start, 8
    for _ in range(MAX_PROBES):
        if trial(quality) >= threshold:
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


def make_sample(image: Any) -> tuple[Any, bool]:
    """Tiles from a grid over the image joined into one image, or the image itself when
    it is small; True when it is the image itself."""
    small = image.width * image.height <= 2 * TILES * TILE * TILE
    if small or min(image.width, image.height) < 4 * TILE:
        return image.copy_memory(), True
    cols = max(1, min(image.width // TILE, round((TILES * image.width / image.height) ** 0.5)))
    rows = max(1, min(image.height // TILE, TILES // cols))
    tiles = []
    for row in range(rows):
        for col in range(cols):
            x = int((col + 0.5) * image.width / cols - TILE / 2) // 16 * 16
            y = int((row + 0.5) * image.height / rows - TILE / 2) // 16 * 16
            tiles.append(image.crop(x, y, TILE, TILE))
    return pyvips.Image.arrayjoin(tiles, across=cols).copy_memory(), False


# --- the predictor ------------------------------------------------------------------------


def predict_ssimulacra2(level: AutoQuality, reference: np.ndarray, candidate: np.ndarray) -> float:
    """The level's linear model of SSIMULACRA2 over ``features`` (8-bit sRGB arrays)."""
    intercept, weights = PREDICTORS[level]
    values = features(reference, candidate)
    return intercept - sum(w * f for w, f in zip(weights, values, strict=True))


def features(reference: np.ndarray, candidate: np.ndarray) -> list[float]:
    """SSIM losses: luma at full, half and quarter size (mean and 4-norm each), then the
    two chroma planes at half size (mean)."""
    import numpy as np

    y_a, cb_a, cr_a = _ycc(reference)
    y_b, cb_b, cr_b = _ycc(candidate)
    values: list[float] = []
    for scale in range(3):
        if scale:
            y_a, y_b = _half(y_a), _half(y_b)
        loss = 1.0 - _ssim_map(y_a, y_b)
        values += [float(loss.mean()), float(np.mean(np.maximum(loss, 0.0) ** 4) ** 0.25)]
    for a, b in ((cb_a, cb_b), (cr_a, cr_b)):
        values.append(float((1.0 - _ssim_map(_half(a), _half(b))).mean()))
    return values


def _ycc(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return y, (b - y) * 0.564, (r - y) * 0.713


def _half(x: np.ndarray) -> np.ndarray:
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    return 0.25 * (x[:h:2, :w:2] + x[1:h:2, :w:2] + x[:h:2, 1:w:2] + x[1:h:2, 1:w:2])  # type: ignore[no-any-return]


def _gauss(x: np.ndarray) -> np.ndarray:
    """Gaussian blur, sigma 1.5, radius 4, edges reflected."""
    import numpy as np

    taps = np.exp(-0.5 * (np.arange(-4, 5) / 1.5) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    padded = np.pad(x, 4, mode="reflect")
    rows = sum(taps[k] * padded[k : k + x.shape[0], :] for k in range(9))
    return sum(taps[k] * rows[:, k : k + x.shape[1]] for k in range(9))  # type: ignore[no-any-return]


def _ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = _gauss(a), _gauss(b)
    var_a = _gauss(a * a) - mu_a * mu_a
    var_b = _gauss(b * b) - mu_b * mu_b
    cov = _gauss(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (  # type: ignore[no-any-return]
        (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    )


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
