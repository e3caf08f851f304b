"""ThumbHash (https://evanw.github.io/thumbhash/): a placeholder that keeps the aspect
ratio, alpha and more detail than a BlurHash in about 25 bytes.

A port of the reference encoder (Evan Wallace, MIT licence), vectorised with numpy. The
PyPI ports are unmaintained since 2023 and loop per pixel in Python (one pins Pillow < 11),
so this short function is the smaller dependency.
"""

from __future__ import annotations

import base64
import math

import numpy as np


def _round(value: float) -> int:
    # JavaScript's Math.round (half up), which the reference encoder uses; Python's round
    # goes half to even and would change some bytes.
    return math.floor(value + 0.5)


def thumbhash(rgba: np.ndarray) -> str:
    """The ThumbHash of an 8-bit RGBA image at most 100x100, base64-encoded."""
    height, width = rgba.shape[:2]
    if width > 100 or height > 100:
        raise ValueError(f"{width}x{height} does not fit in 100x100")
    pixels = rgba.reshape(-1, 4).astype(np.float64)
    alpha = pixels[:, 3] / 255
    avg_a = float(alpha.sum())
    avg = (alpha[:, None] / 255 * pixels[:, :3]).sum(axis=0)
    if avg_a:
        avg = avg / avg_a
    has_alpha = avg_a < width * height
    l_limit = 5 if has_alpha else 7
    lx = max(1, _round(l_limit * width / max(width, height)))
    ly = max(1, _round(l_limit * height / max(width, height)))
    # Composite onto the average colour, so transparent pixels do not pull colours.
    rgb = avg[None, :] * (1 - alpha[:, None]) + alpha[:, None] / 255 * pixels[:, :3]
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    channels = {
        "l": ((r + g + b) / 3).reshape(height, width),
        "p": ((r + g) / 2 - b).reshape(height, width),
        "q": (r - g).reshape(height, width),
        "a": alpha.reshape(height, width),
    }

    def encode(channel: np.ndarray, nx: int, ny: int) -> tuple[float, list[float], float]:
        xs = (np.arange(width) + 0.5) * math.pi / width
        ys = (np.arange(height) + 0.5) * math.pi / height
        dc, ac, scale = 0.0, [], 0.0
        for cy in range(ny):
            cx = 0
            while cx * ny < nx * (ny - cy):
                basis = np.cos(ys * cy)[:, None] * np.cos(xs * cx)[None, :]
                f = float((channel * basis).sum()) / (width * height)
                if cx or cy:
                    ac.append(f)
                    scale = max(scale, abs(f))
                else:
                    dc = f
                cx += 1
        if scale:
            ac = [0.5 + 0.5 / scale * f for f in ac]
        return dc, ac, scale

    l_dc, l_ac, l_scale = encode(channels["l"], max(3, lx), max(3, ly))
    p_dc, p_ac, p_scale = encode(channels["p"], 3, 3)
    q_dc, q_ac, q_scale = encode(channels["q"], 3, 3)
    landscape = width > height
    header24 = (
        _round(63 * l_dc)
        | _round(31.5 + 31.5 * p_dc) << 6
        | _round(31.5 + 31.5 * q_dc) << 12
        | _round(31 * l_scale) << 18
        | int(has_alpha) << 23
    )
    header16 = (
        (ly if landscape else lx)
        | _round(63 * p_scale) << 3
        | _round(63 * q_scale) << 9
        | int(landscape) << 15
    )
    out = [header24 & 255, header24 >> 8 & 255, header24 >> 16, header16 & 255, header16 >> 8]
    acs = [l_ac, p_ac, q_ac]
    if has_alpha:
        a_dc, a_ac, a_scale = encode(channels["a"], 5, 5)
        out.append(_round(15 * a_dc) | _round(15 * a_scale) << 4)
        acs.append(a_ac)
    nibbles = [_round(15 * f) for ac in acs for f in ac]
    for i in range(0, len(nibbles), 2):
        high = nibbles[i + 1] if i + 1 < len(nibbles) else 0
        out.append(nibbles[i] | high << 4)
    return base64.b64encode(bytes(out)).decode("ascii")
