"""metadata.thumbhash: the reference layout (header, average colour, flags, AC nibbles)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

import photolike
from imgpipe.engine.analyze import analyze_pixels
from imgpipe.engine.placeholders import thumbhash


@dataclass(frozen=True)
class _Header:
    length: int
    rgb: tuple[float, ...]
    alpha: bool
    landscape: bool


def _header(hash_b64: str) -> _Header:
    raw = base64.b64decode(hash_b64)
    h24 = raw[0] | raw[1] << 8 | raw[2] << 16
    h16 = raw[3] | raw[4] << 8
    lum, p, q = (h24 & 63) / 63, (h24 >> 6 & 63) / 31.5 - 1, (h24 >> 12 & 63) / 31.5 - 1
    # thumbHashToAverageRGBA of the reference decoder
    b = lum - 2 / 3 * p
    r = (3 * lum - b + q) / 2
    g = r - q
    return _Header(
        length=len(raw),
        rgb=tuple(max(0.0, min(1.0, c)) * 255 for c in (r, g, b)),
        alpha=bool(h24 >> 23),
        landscape=bool(h16 >> 15),
    )


def test_an_opaque_landscape_photo() -> None:
    rgb = photolike.scene(4, width=1200, height=800)
    value = analyze_pixels(photolike.to_vips(rgb))["thumbhash"]
    header = _header(value)
    assert not header.alpha and header.landscape
    # 5 header bytes + the AC nibbles of L (7x5 grid, triangle), P and Q (3x3 each)
    assert 20 <= header.length <= 30, header
    mean = rgb.reshape(-1, 3).mean(axis=0)
    assert max(abs(a - b) for a, b in zip(header.rgb, mean, strict=True)) < 12, (header, mean)


def test_a_flat_colour_is_its_average() -> None:
    rgba = np.zeros((60, 40, 4), np.uint8)
    rgba[...] = (200, 40, 90, 255)
    header = _header(thumbhash(rgba))
    assert not header.landscape and not header.alpha
    assert max(abs(a - b) for a, b in zip(header.rgb, (200, 40, 90), strict=True)) < 8, header


def test_transparency_sets_the_alpha_flag_and_adds_its_channel() -> None:
    rgba = np.zeros((50, 100, 4), np.uint8)
    rgba[:, :50] = (20, 120, 220, 255)  # the right half fully transparent
    opaque = rgba.copy()
    opaque[..., 3] = 255
    with_alpha, without = _header(thumbhash(rgba)), _header(thumbhash(opaque))
    assert with_alpha.alpha and not without.alpha
    # The average ignores transparent pixels: the visible half's blue.
    assert max(abs(a - b) for a, b in zip(with_alpha.rgb, (20, 120, 220), strict=True)) < 12


def test_it_is_deterministic_and_bounded() -> None:
    rgba = np.dstack([photolike.scene(5, 100, 75), np.full((75, 100), 255, np.uint8)])
    assert thumbhash(rgba) == thumbhash(rgba.copy())
    try:
        thumbhash(np.zeros((101, 10, 4), np.uint8))
    except ValueError:
        pass
    else:
        raise AssertionError("a 101 px image must be refused")
