"""quality=auto: its levels in render options and profiles, one cache key per level, and
what each level makes of a photo-like image (engine/auto_quality.py)."""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import pyvips

from extras import require
from imgpipe.domain.media import ImageFormat
from imgpipe.domain.profiles import parse_profile
from imgpipe.domain.render_options import AUTO, AutoQuality, BadOption, parse_options
from imgpipe.engine import auto_quality, ssimulacra2
from imgpipe.engine.encode import _encode, encode_detailed


@pytest.mark.parametrize(
    ("raw", "level"),
    [
        ("auto", AutoQuality.GOOD),
        ("auto:good", AutoQuality.GOOD),
        ("auto:best", AutoQuality.BEST),
        ("auto:eco", AutoQuality.ECO),
    ],
)
def test_q_takes_each_level(raw: str, level: AutoQuality) -> None:
    assert parse_options([("q", raw)]).quality is level
    profile = parse_profile("p", {"width": 100, "height": 100, "quality": raw})
    assert profile.options.quality is level


@pytest.mark.parametrize("raw", ["auto:max", "AUTO", "auto:", "good", "auto:good:x"])
def test_an_unknown_level_is_a_bad_option(raw: str) -> None:
    with pytest.raises(BadOption) as caught:
        parse_options([("q", raw)])
    assert caught.value.option == "q"
    assert "auto, auto:best, auto:good, auto:eco" in caught.value.expected
    with pytest.raises(ValueError, match="quality must be an integer from 1 to 100, or auto"):
        parse_profile("p", {"width": 100, "height": 100, "quality": raw})


def test_auto_and_auto_good_are_one_render_and_one_profile() -> None:
    plain, named = parse_options([("q", "auto")]), parse_options([("q", "auto:good")])
    assert plain.canonical() == named.canonical() == "q=auto"  # old signed URLs still match
    assert plain.cache_digest("webp") == named.cache_digest("webp")
    profiles = [parse_profile("p", {"w": 10, "h": 10, "q": q}) for q in ("auto", "auto:good")]
    assert profiles[0].digest == profiles[1].digest
    assert parse_options([("q", "auto:eco")]).canonical() == "q=auto:eco"
    keys = {
        parse_options([("q", q)]).cache_digest("webp")
        for q in ("auto", "auto:eco", "auto:best", "85")
    }
    assert len(keys) == 4
    assert AUTO is AutoQuality.GOOD


def photo_like(width: int = 640, height: int = 480) -> Any:
    """A sky-like gradient, fine noise (grain and texture) and a few hard-edged shapes."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([90 + 100 * y / height, 120 + 60 * x / width, 200 - 80 * y / height], axis=2)
    texture = 18 * np.sin(x / 7.0) * np.cos(y / 11.0)
    pixels = base + texture[..., None] + rng.normal(0, 2, (height, width, 1))
    pixels[100:220, 80:260] = [200, 60, 40]
    pixels[260:420, 380:560, 1] = 230
    yy, xx = y - 150, x - 470
    pixels[(yy**2 + xx**2) < 60**2] = [30, 30, 30]
    array = np.clip(pixels, 0, 255).astype(np.uint8)
    return pyvips.Image.new_from_array(array, interpretation="srgb").copy_memory()


@pytest.fixture(scope="module")
def image() -> Any:
    return photo_like()


@pytest.fixture(scope="module")
def results(image: Any) -> dict[AutoQuality, Any]:
    return {level: encode_detailed(image, ImageFormat.WEBP, level) for level in AutoQuality}


@pytest.mark.parametrize("fmt", [ImageFormat.WEBP, ImageFormat.AVIF, ImageFormat.JPEG])
def test_eco_and_good_are_smaller_than_q85_and_keep_their_targets(
    image: Any, fmt: ImageFormat
) -> None:
    q85 = _encode(image, fmt, 85)
    reference = ssimulacra2.Reference(image)
    for level in (AutoQuality.ECO, AutoQuality.GOOD):
        out = encode_detailed(image, fmt, level)
        assert out.target_met and len(out.data) < len(q85), level
        score = reference.score(pyvips.Image.new_from_buffer(out.data, ""))
        assert score >= auto_quality.LEVELS[level].target, level


def test_a_prediction_that_passes_is_final_and_one_that_misses_is_searched(image: Any) -> None:
    # WebP's good and eco encode the whole image at the sample's prediction and score it:
    # a pass costs no further encode, a miss searches on until the target holds.
    spec = auto_quality.LEVELS[AutoQuality.GOOD]
    reference = ssimulacra2.Reference(image)

    def encode(pixels: Any, quality: int, trial: bool = False) -> bytes:
        return _encode(pixels, ImageFormat.WEBP, quality, False, trial)

    kept = auto_quality._checked(image, spec, spec.ceiling, encode, descend=False)
    assert (kept.quality, kept.probes, kept.met) == (spec.ceiling, 1, True)
    searched = auto_quality._checked(image, spec, 60, encode, descend=False)
    assert searched.met and 60 < searched.quality < spec.ceiling and searched.probes > 1
    score = reference.score(pyvips.Image.new_from_buffer(searched.data, ""))
    assert score >= spec.target


def test_ssimulacra2_agrees_with_the_package(image: Any, results: dict[AutoQuality, Any]) -> None:
    package = require("ssimulacra2", "bench")
    decoded = pyvips.Image.new_from_buffer(results[AutoQuality.ECO].data, "")
    expected = package.compute_ssimulacra2(
        io.BytesIO(image.pngsave_buffer()), io.BytesIO(decoded.pngsave_buffer())
    )
    assert ssimulacra2.score(image, decoded) == pytest.approx(expected, abs=0.1)


def test_ssimulacra2_of_an_image_against_itself_is_100(image: Any) -> None:
    assert ssimulacra2.score(image, image) == pytest.approx(100.0, abs=0.01)


def test_the_search_stops_next_to_a_failing_quality() -> None:
    spec = auto_quality.LEVELS[AutoQuality.GOOD]
    tried: list[int] = []

    def trial(quality: int) -> float:  # a steep, straight score: 70 at quality 63
        tried.append(quality)
        return spec.threshold + 1.5 * (quality - 63)

    assert auto_quality.search(trial, spec) == (63, True)
    assert len(tried) <= auto_quality.MAX_TRIALS


def test_a_search_that_never_passes_points_on_not_at_the_ceiling() -> None:
    spec = auto_quality.LEVELS[AutoQuality.ECO]

    def trial(quality: int) -> float:  # a flat score: the sample never clears the bar
        return spec.threshold - 1 + 0.01 * (quality - spec.start)

    quality, found = auto_quality.search(trial, spec)
    assert not found and spec.start < quality < spec.ceiling


def test_best_keeps_the_ssim_floor_or_says_it_could_not(
    image: Any, results: dict[AutoQuality, Any]
) -> None:
    out = results[AutoQuality.BEST]
    decoded = auto_quality.rgb_array(pyvips.Image.new_from_buffer(out.data, ""))
    ssim = auto_quality.floor_ssim(auto_quality.rgb_array(image), decoded)
    if out.target_met:
        assert ssim > 0.95
    else:
        assert out.quality == auto_quality.QUALITY_RANGE[1]


def test_levels_are_monotonic_in_bytes(results: dict[AutoQuality, Any]) -> None:
    sizes = [
        len(results[level].data) for level in (AutoQuality.ECO, AutoQuality.GOOD, AutoQuality.BEST)
    ]
    assert sizes == sorted(sizes)


def test_png_stays_lossless_at_every_level(image: Any) -> None:
    for level in AutoQuality:
        out = encode_detailed(image, ImageFormat.PNG, level)
        decoded = pyvips.Image.new_from_buffer(out.data, "")
        assert out.quality is None and (decoded - image).abs().max() == 0


def test_floor_ssim_is_scikit_images(image: Any, results: dict[AutoQuality, Any]) -> None:
    metrics = require("skimage.metrics", "bench")
    reference = auto_quality.rgb_array(image)
    decoded = auto_quality.rgb_array(
        pyvips.Image.new_from_buffer(results[AutoQuality.ECO].data, "")
    )
    expected = metrics.structural_similarity(reference, decoded, channel_axis=2, data_range=255.0)
    assert auto_quality.floor_ssim(reference, decoded) == pytest.approx(expected, abs=1e-6)


def _encoder(fmt: ImageFormat, fast: bool = False) -> auto_quality.Encoder:
    def encode(pixels: Any, quality: int, trial: bool = False) -> bytes:
        return _encode(pixels, fmt, quality, fast, trial)

    return encode


def test_an_encode_whose_own_tiles_miss_the_gate_is_checked_on_the_whole_image(
    image: Any,
) -> None:
    # The synthetic image's sample scores far above the whole image (its flat areas and
    # stripes compress unlike the 25 tiles alone): the prediction alone would miss the
    # target; the same tiles cut from the real encode show it, and the checks step up.
    spec = auto_quality.LEVELS[AutoQuality.GOOD]
    prediction = auto_quality.PREDICTIONS[(ImageFormat.WEBP, AutoQuality.GOOD)]
    encode = _encoder(ImageFormat.WEBP)
    sample, _ = auto_quality.make_sample(image)
    trials = auto_quality._Trials(sample, encode)
    crossing, _ = auto_quality.search(
        trials, replace(spec, threshold=prediction.threshold), auto_quality.MAX_TRIALS
    )
    predicted = encode(image, crossing + prediction.offset)
    reference = ssimulacra2.Reference(image)
    assert reference.score_pixels(ssimulacra2.decoded_pixels(predicted)) < spec.target

    out = auto_quality.encode_auto(image, ImageFormat.WEBP, AutoQuality.GOOD, encode)
    assert out.met and out.probes > trials.count + 1
    assert reference.score_pixels(ssimulacra2.decoded_pixels(out.data)) >= spec.target


@pytest.mark.parametrize("fast", [False, True], ids=["profile", "render"])
@pytest.mark.parametrize("fmt", [ImageFormat.WEBP, ImageFormat.AVIF, ImageFormat.JPEG])
@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_photos_it_was_not_fitted_to_keep_their_targets_in_one_whole_image_encode(
    name: str, fmt: ImageFormat, fast: bool
) -> None:
    # scikit-image's bundled photos (512x512, 600x400), not the corpus the
    # predictions were fitted on: each level's output keeps its target, in two sample
    # trials and one or two encodes of the whole image (the prediction stands on all but
    # coffee's AVIF render at eco, whose tiles miss the gate: its whole image scores 60.06
    # at the prediction, under the 60.1 a pass needs, and is stepped up once). Renders
    # encode at a lower effort, with predictions fitted for it.
    data = require("skimage.data", "bench")
    pixels = np.ascontiguousarray(getattr(data, name)()[..., :3])
    photo = pyvips.Image.new_from_array(pixels, interpretation="srgb")
    reference = ssimulacra2.Reference(photo)
    q85 = _encode(photo, fmt, 85, fast)
    for level in (AutoQuality.ECO, AutoQuality.GOOD):
        out = auto_quality.encode_auto(photo, fmt, level, _encoder(fmt, fast), fast)
        score = reference.score_pixels(ssimulacra2.decoded_pixels(out.data))
        assert score >= auto_quality.LEVELS[level].target, level
        assert out.met and len(out.data) < len(q85), level
        assert out.probes <= auto_quality.MAX_TRIALS + 2, level


def test_decoded_pixels_are_what_libvips_decodes(image: Any) -> None:
    # quality=auto decodes opaque WebP and JPEG with Pillow (faster): the same pixels.
    with_alpha = image.bandjoin(np.uint8(200))
    for encoded in (
        image.webpsave_buffer(Q=70),
        image.jpegsave_buffer(Q=70),
        image.jpegsave_buffer(Q=70, interlace=True, optimize_coding=True),
        image.heifsave_buffer(Q=60, compression="av1"),
        with_alpha.webpsave_buffer(Q=70),  # alpha: flattened on grey, by libvips
    ):
        expected = ssimulacra2.rgb_pixels(pyvips.Image.new_from_buffer(encoded, ""))
        assert np.array_equal(ssimulacra2.decoded_pixels(encoded), expected)
