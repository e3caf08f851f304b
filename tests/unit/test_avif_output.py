"""AVIF output at the registry's settings: renders (a client waits: fast_options) and
profile variants make valid AVIF files of the planned size, and a quality means about the
same in AVIF as in WebP (quality_map), so an AVIF costs fewer bytes than the WebP."""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
import pytest
import pyvips
from PIL import Image

from imgpipe.domain.formats import FORMATS, OUTPUT_FORMATS, ImageFormat
from imgpipe.domain.media import Limits
from imgpipe.domain.render_options import parse_options
from imgpipe.engine.encode import encode
from imgpipe.engine.probe import probe
from imgpipe.engine.render import render

LIMITS = Limits(max_upload_bytes=50 << 20, max_pixels=268_435_456, max_frames=500)


def photo(tmp_path: Path, size: tuple[int, int] = (1600, 1200), grain: float = 4) -> Path:
    """Smooth gradients, edges and ``grain`` (noise, as a camera sensor's), as a JPEG."""
    width, height = size
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = np.stack(
        [
            128 + 100 * np.sin(x / 97.0) * np.cos(y / 53.0),
            (x * 255 / width + 60 * ((x // 160 + y // 160) % 2)) % 256,
            y * 255 / height,
        ],
        axis=-1,
    ) + rng.normal(0, grain, size=(height, width, 3))
    path = tmp_path / "photo.jpg"
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(path, quality=92)
    return path


def rendered(path: Path, query: str) -> bytes:
    options = parse_options(parse_qsl(query))
    return render(path, probe(path, LIMITS), options, options.format).data


@pytest.mark.parametrize(("query", "size"), [("w=800&h=600", (800, 600)), ("w=333", (333, 250))])
def test_an_avif_render_is_a_valid_avif_of_the_planned_size(
    tmp_path: Path, query: str, size: tuple[int, int]
) -> None:
    path = photo(tmp_path)
    data = rendered(path, f"{query}&format=avif")
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.format == "AVIF"
        assert decoded.size == size
        pixels = np.asarray(decoded.convert("RGB"), dtype=np.float32)
    vips = pyvips.Image.new_from_buffer(data, "")
    assert (vips.width, vips.height) == size
    assert vips.get("heif-compression") == "av1"
    # The pixels are the photo's: compare with the same render as a lossless PNG.
    reference = Image.open(io.BytesIO(rendered(path, f"{query}&format=png"))).convert("RGB")
    assert np.abs(pixels - np.asarray(reference, dtype=np.float32)).mean() < 4


def test_a_profile_variant_in_avif_is_valid_too(tmp_path: Path) -> None:
    image = pyvips.Image.new_from_file(str(photo(tmp_path))).thumbnail_image(640)
    data = encode(image, ImageFormat.AVIF, 85)
    decoded = pyvips.Image.new_from_buffer(data, "")
    assert (decoded.width, decoded.height) == (640, 480)


def test_at_the_same_quality_avif_is_smaller_than_webp(tmp_path: Path) -> None:
    """quality_map is calibrated on the corpus photos (bench/avif_settings_bench.py: at
    q 80, AVIF scores what WebP scores in about 0.81 of its bytes); a photo has grain,
    and so does this one. (On clean synthetic gradients AVIF at q 80 scores well above
    WebP, in about WebP's bytes.)"""
    path = photo(tmp_path, grain=8)
    avif = rendered(path, "w=800&h=600&format=avif")
    webp = rendered(path, "w=800&h=600&format=webp")
    assert len(avif) < len(webp)


@pytest.mark.parametrize("fmt", sorted(OUTPUT_FORMATS))
def test_quality_maps_cover_every_quality_and_keep_its_order(fmt: ImageFormat) -> None:
    spec = FORMATS[fmt]
    qs = [spec.saver_quality(q) for q in range(1, 101)]
    assert all(1 <= q <= 100 for q in qs)
    assert qs == sorted(qs)  # a higher quality never makes a worse file
    if spec.quality_map:
        assert spec.quality_map[0][0] == 1 and spec.quality_map[-1] == (100, 100)


def test_avif_asks_the_encoder_for_a_lower_q_than_the_quality_asked() -> None:
    avif = FORMATS[ImageFormat.AVIF]
    assert avif.saver_quality(80) < 80
    assert FORMATS[ImageFormat.WEBP].saver_quality(80) == 80
