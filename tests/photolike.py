"""A photo-like scene, generated: sky gradient, textured ground, hard-edged objects and
sensor grain. Tests of analysis need natural image statistics (edges at every scale, a
little noise) without committing anyone's photographs."""

from __future__ import annotations

import numpy as np
import pyvips


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    coarse = rng.normal(size=(shape[0] // cell + 2, shape[1] // cell + 2)).astype(np.float32)
    image = pyvips.Image.new_from_array(coarse.tolist()).cast("float")
    image = image.resize(cell, kernel="linear").crop(0, 0, shape[1], shape[0])
    return np.ndarray(buffer=image.write_to_memory(), dtype=np.float32, shape=shape).copy()


def scene(seed: int, width: int = 1200, height: int = 800) -> np.ndarray:
    """An 8-bit RGB array (height, width, 3)."""
    rng = np.random.default_rng(seed)
    horizon = int(height * rng.uniform(0.4, 0.6))
    ys = np.arange(height, dtype=np.float32)[:, None, None] / height
    sky_top = rng.uniform([40, 90, 160], [90, 140, 220])
    sky_low = rng.uniform([170, 190, 210], [220, 230, 245])
    image = sky_top + (sky_low - sky_top) * ys * np.ones((1, width, 1), np.float32)
    ground = rng.uniform([60, 70, 30], [120, 110, 70])
    texture = sum(
        (
            _smooth_noise(rng, (height, width), cell) * amp
            for cell, amp in ((4, 10.0), (24, 18.0), (120, 25.0))
        ),
        np.zeros((height, width), np.float32),
    )
    image[horizon:] = ground + texture[horizon:, :, None] * np.array([1.0, 0.9, 0.6])
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(12):  # hard-edged objects: houses, stones, a sun
        colour = rng.uniform(20, 235, size=3)
        cx, cy = rng.uniform(0, width), rng.uniform(0.2 * height, height)
        if rng.random() < 0.5:
            w, h = rng.uniform(40, 220), rng.uniform(30, 160)
            mask = (abs(xx - cx) < w / 2) & (abs(yy - cy) < h / 2)
        else:
            r = rng.uniform(20, 90)
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        image[mask] = colour
    for _ in range(30):  # thin lines: branches, wires, window frames
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        angle, length = rng.uniform(0, np.pi), rng.uniform(50, 300)
        t = np.linspace(0, 1, int(length))
        px = np.clip((x0 + np.cos(angle) * length * t).astype(int), 0, width - 1)
        py = np.clip((y0 + np.sin(angle) * length * t).astype(int), 0, height - 1)
        image[py, px] = rng.uniform(0, 80, size=3)
    image += rng.normal(0, 2.0, size=image.shape)  # sensor grain
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def to_vips(rgb: np.ndarray) -> pyvips.Image:
    height, width, bands = rgb.shape
    return pyvips.Image.new_from_memory(
        np.ascontiguousarray(rgb).tobytes(), width, height, bands, "uchar"
    ).copy(interpretation="srgb")


def encode(rgb: np.ndarray, suffix: str = ".png", **options: object) -> bytes:
    return bytes(to_vips(rgb).write_to_buffer(suffix, **options))
