"""Bounded cost per image, whatever its bytes (issue 15, item 3).

Hostile files are generated here, small: each declares far more work than its bytes
hold. The probe (the gate the API and the worker run) must refuse them from the header,
quickly; what it lets through must stop at the deadline, inside libvips or in the
decoder's child process, not after the step.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import pyvips
from PIL import Image

from hostileimages import png_header_only, rle8_bmp, tiff_with_directories
from imgpipe.domain.errors import ProcessTimeout, TooManyFrames, TooManyPixels
from imgpipe.domain.media import ImageFormat, Limits, ProbeCache, ProbeResult
from imgpipe.domain.profiles import Profile, VariantSpec
from imgpipe.domain.render_options import parse_options
from imgpipe.engine.deadline import Deadline
from imgpipe.engine.isolated import decode_isolated
from imgpipe.engine.pipeline import render_variants
from imgpipe.engine.probe import probe

LIMITS = Limits(26_214_400, 268_435_456, 500)  # the defaults, MAX_DECODE_BYTES 1 GiB
# A refusal from the header reads a few hundred bytes; the bound is for "did not decode",
# with many times the headroom on a loaded two-core machine.
HEADER_BOUND_S = 10.0


def _spec(name: str, width: int, height: int) -> VariantSpec:
    options = parse_options([("w", str(width)), ("h", str(height))])
    return VariantSpec(name, Profile(name, options), ImageFormat.WEBP)


def _probe_refuses(path: Path, error: type[Exception]) -> str:
    started = time.monotonic()
    with pytest.raises(error) as caught:
        probe(path, LIMITS)
    assert time.monotonic() - started < HEADER_BOUND_S
    return str(caught.value)


def test_an_rle_bmp_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.bmp"
    path.write_bytes(rle8_bmp(16384, 16384, 255))  # about 2 MB declaring 805 MB of pixels
    assert path.stat().st_size < 3_000_000
    message = _probe_refuses(path, TooManyPixels)
    assert "times its size" in message


def test_an_ordinary_rle_bmp_is_still_accepted(tmp_path: Path) -> None:
    path = tmp_path / "small.bmp"
    path.write_bytes(rle8_bmp(640, 480, 255))  # ratio 380, but 1 MB decoded
    facts = probe(path, LIMITS)
    assert (facts.width, facts.height, facts.bands) == (640, 480, 3)


def test_a_16_bit_interlaced_png_over_the_decode_budget_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    # 16384 x 16384 = MAX_PIXELS itself, but 16-bit RGBA: 2 GiB to decode.
    path.write_bytes(png_header_only(16384, 16384, 16, 6, 1))
    message = _probe_refuses(path, TooManyPixels)
    assert "MAX_DECODE_BYTES" in message
    assert "x 4 bands x 2 bytes" in message


def test_max_decode_bytes_counts_bands_and_sample_depth(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    pyvips.Image.black(300, 200, bands=3).cast("ushort").copy(interpretation="rgb16").pngsave(
        str(path)
    )
    budget = 300 * 200 * 3 * 2
    facts = probe(path, Limits(26_214_400, 10**9, 500, max_decode_bytes=budget))
    assert (facts.bands, facts.sample_bytes, facts.decode_bytes) == (3, 2, budget)
    with pytest.raises(TooManyPixels):
        probe(path, Limits(26_214_400, 10**9, 500, max_decode_bytes=budget - 1))


def test_an_animation_is_counted_over_all_its_frames(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = pyvips.Image.arrayjoin(
        [pyvips.Image.black(100, 100, bands=3) + i * 10 for i in range(20)], across=1
    ).cast("uchar")
    frames = frames.copy(interpretation="srgb")
    frames.set_type(pyvips.GValue.gint_type, "page-height", 100)
    frames.gifsave(str(path))
    facts = probe(path, LIMITS)
    assert facts.frames == 20
    assert facts.decode_bytes == 100 * 100 * facts.bands * 20
    with pytest.raises(TooManyPixels):
        probe(path, Limits(26_214_400, 10**9, 500, max_decode_bytes=facts.decode_bytes - 1))


def test_a_tiff_of_200000_directories_is_refused_without_walking_them(tmp_path: Path) -> None:
    path = tmp_path / "ifds.tif"
    path.write_bytes(tiff_with_directories(200_000))
    assert path.stat().st_size < 2_000_000
    message = _probe_refuses(path, TooManyFrames)
    assert "more than 500 pages" in message


def test_a_tiff_with_a_few_pages_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "few.tif"
    path.write_bytes(tiff_with_directories(3))
    facts = probe(path, LIMITS)
    assert (facts.format, facts.width, facts.height) == (ImageFormat.TIFF, 1, 1)


def _slow_rle_bmp(tmp_path: Path) -> tuple[Path, ProbeResult]:
    """Under every budget (ratio 90) and slow for Pillow's Python RLE decoder: tens of
    seconds in process."""
    path = tmp_path / "slow.bmp"
    path.write_bytes(rle8_bmp(12000, 12000, 60))
    return path, probe(path, LIMITS)


def test_a_bmp_decode_stops_at_the_deadline_in_its_child_process(tmp_path: Path) -> None:
    path, facts = _slow_rle_bmp(tmp_path)
    started = time.monotonic()
    result = render_variants(path, facts, [_spec("thumbnail", 150, 150)], Deadline(0.5))
    elapsed = time.monotonic() - started
    assert isinstance(result.outcomes["thumbnail"], ProcessTimeout)
    # Pillow alone takes 20+ s on this file; the child is killed at 0.5 s.
    assert elapsed < 8.0


def test_the_child_decoder_has_its_own_memory_limit(tmp_path: Path) -> None:
    path, _facts = _slow_rle_bmp(tmp_path)
    with pytest.raises(TooManyPixels, match="more than"):
        # The interpreter and Pillow take about 150 MB; the 144 MB image does not fit.
        decode_isolated(path, "bmp", timeout_s=60, memory_bytes=250 << 20)


def test_the_child_decoder_gives_pillows_pixels(tmp_path: Path) -> None:
    path = tmp_path / "small.bmp"
    path.write_bytes(rle8_bmp(64, 48, 7))
    pixels, width, height, bands, _icc = decode_isolated(
        path, "bmp", timeout_s=60, memory_bytes=2 << 30
    )
    with Image.open(path) as im:
        assert pixels == im.convert("RGB").tobytes()
    assert (width, height, bands) == (64, 48, 3)


def test_the_deadline_stops_libvips_inside_an_animated_encode(tmp_path: Path) -> None:
    # 200 frames of 16-colour noise: the WebP encode of every frame (lossy or lossless,
    # whichever is smaller) takes about 20 s on a quiet core; only the kill hook ends it
    # at the 1 s deadline, since the steps before the encode are lazy and pass at once.
    path = tmp_path / "anim.gif"
    rng = np.random.default_rng(3)
    palette = [v for i in range(16) for v in (i * 17, 255 - i * 17, (i * 50) % 256)]
    frames = []
    for _ in range(200):
        frame = Image.fromarray(rng.integers(0, 16, (300, 300), dtype=np.uint8), "P")
        frame.putpalette(palette)
        frames.append(frame)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=40)
    facts = probe(path, LIMITS)
    assert facts.frames == 200
    started = time.monotonic()
    result = render_variants(path, facts, [_spec("big", 300, 300)], Deadline(1.0))
    elapsed = time.monotonic() - started
    outcome = result.outcomes["big"]
    assert isinstance(outcome, ProcessTimeout), outcome
    assert elapsed < 10.0


def test_the_probe_cache_reads_a_header_once_and_keeps_refusals() -> None:
    cache = ProbeCache(size=2)
    calls: list[str] = []
    facts = ProbeResult(ImageFormat.PNG, 10, 10)

    def good() -> ProbeResult:
        calls.append("good")
        return facts

    def refused() -> ProbeResult:
        calls.append("refused")
        raise TooManyFrames("too many")

    assert cache.get("a", good) is facts
    assert cache.get("a", good) is facts
    for _ in range(2):
        with pytest.raises(TooManyFrames):
            cache.get("b", refused)
    assert calls == ["good", "refused"]
    cache.get("c", good)  # evicts the least recently used ("a")
    cache.get("a", good)
    assert calls == ["good", "refused", "good", "good"]
    assert len(cache) == 2
