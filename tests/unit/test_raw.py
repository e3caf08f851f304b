"""Camera RAW through the engine: demosaiced from the sensor, oriented, one decode per image."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgpipe.domain.media import Limits
from imgpipe.domain.profiles import ProfileSet
from imgpipe.engine import raw
from imgpipe.engine.pipeline import Rendered, render_variants
from imgpipe.engine.probe import probe
from rawimages import bayer, dng, scene

LIMITS = Limits(max_upload_bytes=50 << 20, max_pixels=268_435_456, max_frames=500)
BUILTIN = [s for p in ProfileSet.builtin().profiles.values() for s in p.variants()]


def _pixels(outcome: object) -> Image.Image:
    assert isinstance(outcome, Rendered), outcome
    return Image.open(io.BytesIO(outcome.data)).convert("RGB")


def _is_red(rgb: tuple[int, ...]) -> bool:
    r, g, b = rgb
    return r > 150 and g < 90 and b < 90


def _is_grey(rgb: tuple[int, ...]) -> bool:
    return max(rgb) - min(rgb) < 25 and 60 < rgb[0] < 200


@pytest.mark.parametrize(
    ("orientation", "red_corner"),
    [
        (1, "top-left"),
        (6, "top-right"),
        (3, "bottom-right"),
        (8, "bottom-left"),
        (2, "top-right"),  # mirrored
        (5, "top-left"),  # transposed
        (7, "bottom-right"),  # transverse
        (4, "bottom-left"),  # upside down, mirrored
    ],
)
def test_the_variants_are_the_oriented_demosaic_with_its_colours(
    tmp_path: Path, orientation: int, red_corner: str
) -> None:
    path = tmp_path / "photo.dng"
    path.write_bytes(dng(bayer(scene(1200, 800)), orientation=orientation))
    sideways = orientation >= 5
    calls: list[Path] = []
    decode_raw = raw.decode_raw

    def counting(p: Path, *args: object) -> object:
        calls.append(p)
        return decode_raw(p, *args)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(raw, "decode_raw", counting)
        result = render_variants(path, probe(path, LIMITS), BUILTIN)
    # Three variants from one demosaic: the base decode is shared.
    assert len(calls) == 1
    large = _pixels(result.outcomes["large"])
    assert large.size == ((720, 1080) if sideways else (1200, 800))
    medium = _pixels(result.outcomes["medium"])
    assert medium.size == ((400, 600) if sideways else (800, 533))
    assert _pixels(result.outcomes["thumbnail"]).size == (150, 150)
    w, h = large.size
    corners = {
        "top-left": (20, 20),
        "top-right": (w - 20, 20),
        "bottom-left": (20, h - 20),
        "bottom-right": (w - 20, h - 20),
    }
    for name, xy in corners.items():
        colour = large.getpixel(xy)
        assert isinstance(colour, tuple)
        assert _is_red(colour) if name == red_corner else _is_grey(colour), (name, colour)


def test_the_embedded_preview_is_never_the_image(tmp_path: Path) -> None:
    preview = np.full((40, 60, 3), (0, 0, 255), np.uint8)  # small and blue: unmistakable
    path = tmp_path / "photo.dng"
    path.write_bytes(dng(bayer(scene(600, 400)), preview=preview))
    facts = probe(path, LIMITS)
    assert (facts.width, facts.height) == (600, 400)
    large = _pixels(render_variants(path, facts, BUILTIN).outcomes["large"])
    assert large.size == (600, 400)
    corner, middle = large.getpixel((10, 10)), large.getpixel((400, 300))
    assert isinstance(corner, tuple) and isinstance(middle, tuple)
    assert _is_red(corner) and _is_grey(middle)


def test_half_the_sensor_is_decoded_only_when_it_covers_every_variant(tmp_path: Path) -> None:
    assert raw.half_size_suffices((6000, 4000), (1620, 1080))
    assert raw.half_size_suffices((3240, 2160), (1620, 1080))
    assert not raw.half_size_suffices((3000, 2000), (1620, 1080))  # the base needs more
    assert not raw.half_size_suffices((6000, 4000), None)  # no target: full size
    # A 4000x2400 sensor: the 1800x1080 base comes from 2x2 cells (2000x1200), with the
    # scene's colours and layout intact.
    path = tmp_path / "big.dng"
    path.write_bytes(dng(bayer(scene(4000, 2400)), orientation=8))
    result = render_variants(path, probe(path, LIMITS), BUILTIN)
    large = _pixels(result.outcomes["large"])
    assert large.size == (648, 1080)
    bottom_left, top_right = large.getpixel((20, 1060)), large.getpixel((628, 20))
    assert isinstance(bottom_left, tuple) and isinstance(top_right, tuple)
    assert _is_red(bottom_left) and _is_grey(top_right)


def test_output_size_follows_libraw(tmp_path: Path) -> None:
    assert raw.output_size(6000, 4000, 1.0, 0) == (6000, 4000)
    assert raw.output_size(6000, 4000, 1.0, 6) == (4000, 6000)
    assert raw.output_size(6000, 4000, 1.0, 5) == (4000, 6000)
    assert raw.output_size(6000, 4000, 1.0, 4) == (4000, 6000)  # transposed (EXIF 5)
    assert raw.output_size(6000, 4000, 1.0, 7) == (4000, 6000)  # transverse (EXIF 7)
    assert raw.output_size(6000, 4000, 1.0, 1) == (6000, 4000)  # mirrored
    assert raw.output_size(3000, 4000, 2.0, 0) == (6000, 4000)  # wide pixels stretched
    assert raw.output_size(6000, 2000, 0.5, 3) == (6000, 4000)


def test_an_on_demand_render_of_a_dng_goes_through_the_same_engine(tmp_path: Path) -> None:
    from urllib.parse import parse_qsl

    from imgpipe.domain.media import ImageFormat
    from imgpipe.domain.render_options import parse_options
    from imgpipe.engine.render import render

    path = tmp_path / "photo.dng"
    path.write_bytes(dng(bayer(scene(1200, 800)), orientation=6))
    options = parse_options(parse_qsl("w=200&h=300&fit=cover&flip=h"))
    result = render(path, probe(path, LIMITS), options, ImageFormat.PNG)
    image = Image.open(io.BytesIO(result.data)).convert("RGB")
    assert image.size == (200, 300)
    # Upright the red patch is top right; mirrored, top left.
    top_left, top_right = image.getpixel((5, 5)), image.getpixel((194, 5))
    assert isinstance(top_left, tuple) and isinstance(top_right, tuple)
    assert _is_red(top_left) and _is_grey(top_right)
