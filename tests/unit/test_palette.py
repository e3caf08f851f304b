"""metadata.palette: known palettes come back with their colours (within ΔE 5) and shares
(within 5 points), largest first; a sheet of white paper on a dark table is white first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import photolike
from imgpipe.engine.analyze import analyze_pixels
from imgpipe.engine.palette import srgb_to_lab

RGB = tuple[int, int, int]


def _delta_e(a: str | RGB, b: str | RGB) -> float:
    def lab(c: str | RGB) -> np.ndarray:
        rgb = tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) if isinstance(c, str) else c
        return srgb_to_lab(np.array(rgb, dtype=np.uint8))

    return float(np.linalg.norm(lab(a) - lab(b)))


def _blocks(width: int, height: int, parts: list[tuple[RGB, float]]) -> np.ndarray:
    """Vertical bands of the given colours and shares, left to right."""
    image = np.zeros((height, width, 3), np.uint8)
    x = 0
    for i, (colour, share) in enumerate(parts):
        end = width if i == len(parts) - 1 else x + round(share * width)
        image[:, x:end] = colour
        x = end
    return image


def _analysed(rgb: np.ndarray) -> dict[str, Any]:
    return analyze_pixels(photolike.to_vips(rgb))


def _assert_palette(found: list[dict[str, Any]], expected: list[tuple[RGB, float]]) -> None:
    assert len(found) >= len(expected), found
    for (colour, share), swatch in zip(expected, found, strict=False):
        assert _delta_e(swatch["hex"], colour) < 5, (swatch, colour, found)
        assert abs(swatch["share"] - share) < 0.05, (swatch, share, found)


PALETTES = {
    "three": [((200, 40, 40), 0.5), ((30, 60, 200), 0.3), ((240, 230, 140), 0.2)],
    "five": [
        ((20, 20, 24), 0.35),
        ((250, 250, 248), 0.25),
        ((40, 150, 60), 0.18),
        ((230, 120, 20), 0.12),
        ((120, 60, 160), 0.10),
    ],
    "pastels": [((250, 200, 210), 0.45), ((200, 230, 250), 0.4), ((220, 250, 200), 0.15)],
}


@pytest.mark.parametrize("name", sorted(PALETTES))
@pytest.mark.parametrize("size", [(900, 600), (64, 48), (3000, 400)])
def test_a_known_palette_comes_back_largest_first(name: str, size: tuple[int, int]) -> None:
    expected = PALETTES[name]
    metadata = _analysed(_blocks(*size, expected))
    _assert_palette(metadata["palette"], expected)
    assert metadata["dominant_colors"] == [s["hex"] for s in metadata["palette"]]
    shares = [s["share"] for s in metadata["palette"]]
    assert shares == sorted(shares, reverse=True)


def test_shading_and_noise_do_not_split_a_colour() -> None:
    # A light gradient and grain over each band: still one swatch per band.
    expected = PALETTES["three"]
    rng = np.random.default_rng(5)
    image = _blocks(900, 600, expected).astype(np.float64)
    image *= np.linspace(0.93, 1.05, 600)[:, None, None]
    image += rng.normal(0, 3, image.shape)
    metadata = _analysed(np.clip(image, 0, 255).astype(np.uint8))
    palette = metadata["palette"]
    for (colour, share), swatch in zip(expected, palette, strict=False):
        assert _delta_e(swatch["hex"], colour) < 5, (swatch, colour, palette)
        assert abs(swatch["share"] - share) < 0.05, (swatch, share, palette)


def _paper_on_table(seed: int) -> np.ndarray:
    """A receipt photographed on a dark wooden table: the paper fills about 60 % of the
    frame, lit unevenly (a lamp top left), with printed lines; the table is a dark red
    brown with grain."""
    rng = np.random.default_rng(seed)
    height, width = 1000, 750
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    grain = np.sin(xx / 7 + 3 * np.sin(yy / 60)) * 8 + rng.normal(0, 4, (height, width))
    table = np.stack([70 + grain, 35 + grain / 2, 30 + grain / 3], axis=-1)
    image = table
    paper = (abs(xx - 380) < 260) & (abs(yy - 500) < 420)
    light = 252 - 40 * np.hypot(xx - 100, yy - 50) / np.hypot(width, height)
    white = np.stack([light, light - 2, light - 6], axis=-1) + rng.normal(0, 2, (height, width, 1))
    image[paper] = white[paper]
    for row in range(150, 860, 26):  # printed lines of text
        line = paper & (abs(yy - row) < 2) & (xx > 180) & (xx < 560 - (row % 7) * 15)
        image[line] = 40
    clipped: np.ndarray = np.clip(image, 0, 255).astype(np.uint8)
    return clipped


@pytest.mark.parametrize("seed", [1, 2])
def test_white_paper_on_a_dark_table_is_white_first(seed: int) -> None:
    rgb = _paper_on_table(seed)
    palette = _analysed(rgb)["palette"]
    first = palette[0]
    lightness = float(
        srgb_to_lab(np.array([int(first["hex"][i : i + 2], 16) for i in (1, 3, 5)], np.uint8))[0]
    )
    assert lightness > 85, palette
    assert first["share"] > 0.45, palette
    # The table is one colour, not five shades of dark red.
    dark = [s for s in palette if _delta_e(s["hex"], (70, 35, 30)) < 15]
    assert len(dark) == 1 and dark[0]["share"] > 0.2, palette


def test_the_palette_is_deterministic() -> None:
    rgb = photolike.scene(3)
    assert _analysed(rgb)["palette"] == _analysed(rgb)["palette"]


def test_an_image_with_alpha_is_seen_over_white() -> None:
    rgba = np.zeros((200, 300, 4), np.uint8)
    rgba[:, :150] = (10, 90, 200, 255)  # opaque blue left half, transparent right half
    palette = analyze_pixels(photolike.to_vips(rgba))["palette"]
    assert (
        _delta_e(palette[0]["hex"], (10, 90, 200)) < 5
        or _delta_e(palette[0]["hex"], (255, 255, 255)) < 5
    )
    assert {round(s["share"], 1) for s in palette[:2]} == {0.5}, palette


def test_a_blue_heic_lists_blue_first(tmp_path: Path) -> None:
    # The second case: a clearly blue HEIC once listed only greys.
    import pillow_heif
    from PIL import Image

    from imgpipe.domain.media import Limits
    from imgpipe.domain.profiles import BUILTIN_PROFILES
    from imgpipe.engine.pipeline import render_variants
    from imgpipe.engine.probe import probe

    height, width = 600, 800
    y = np.linspace(0, 1, height)[:, None, None]
    sky = np.array([40, 110, 220]) * (1 - y) + np.array([140, 190, 240]) * y
    rgb = sky * np.ones((1, width, 1))
    rgb[450:] = (200, 200, 200)  # a grey strip of pavement: a quarter of the frame
    rgb += np.random.default_rng(1).normal(0, 3, rgb.shape)
    path = tmp_path / "sky.heic"
    pillow_heif.from_pillow(Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))).save(
        path, quality=80
    )
    limits = Limits(max_upload_bytes=1 << 30, max_pixels=1 << 30, max_frames=500)
    spec = BUILTIN_PROFILES[0].variants()[0]
    palette = render_variants(path, probe(path, limits), [spec]).analysis["palette"]
    blues = [s for s in palette if _lab_of(s["hex"])[2] < -30]
    assert palette[0] in blues and sum(s["share"] for s in blues) > 0.7, palette


def _lab_of(hex_colour: str) -> np.ndarray:
    rgb = [int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]
    return srgb_to_lab(np.array(rgb, np.uint8))
