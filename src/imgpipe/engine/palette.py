"""The colours a person would name, with their share of the image, found in CIELAB.

Counting 4-bit RGB bins (the first version) splits one shaded surface, a sheet of paper
under a lamp, into many thin bins, while a flat dark table stays in one and wins. Here
pixels are grouped by k-means in CIELAB, where distance follows perceived difference, then
clusters closer than ΔE 10 (lightness at half weight) are merged, so a surface counts
once with its whole area.
CIELAB rather than OKLab: OKLab's cube root spreads near-black values far apart (sRGB 0
and 8 are 0.13 apart in L, a large step), so the dark shadows of a night photo split into
several "different" blacks; CIELAB's linear toe keeps them together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Distance under which two colours read as one in a palette: CIELAB with lightness
# differences counted at half weight (as CMC l:c = 2:1 does for acceptability), because
# light falling unevenly on one surface changes mostly its lightness: a sheet of paper
# under a lamp stays one white, from its bright corner to its shaded one.
_LIGHTNESS_WEIGHT = 0.5
_MERGE_DISTANCE = 10.0
# Pixels are first pooled in cells of this size in CIELAB (L 0-100, a and b about
# -100..100): a few hundred weighted points instead of thousands of pixels.
_CELL = 3.0
_CLUSTERS = 10
_ITERATIONS = 15

_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_WHITE = np.array([0.95047, 1.0, 1.08883])  # D65
_EPSILON, _KAPPA = 216 / 24389, 24389 / 27


@dataclass(frozen=True, slots=True)
class Swatch:
    hex: str
    share: float  # of all the image's pixels, 0-1


def srgb_to_lab(rgb8: np.ndarray) -> np.ndarray:
    """8-bit sRGB (..., 3) to CIELAB (..., 3), D65 white."""
    v = rgb8.astype(np.float64) / 255.0
    linear = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    xyz = (linear @ _RGB_TO_XYZ.T) / _WHITE
    f = np.where(xyz > _EPSILON, np.cbrt(xyz), (_KAPPA * xyz + 16) / 116)
    lab: np.ndarray = np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )
    return lab


def lab_to_srgb8(lab: np.ndarray) -> np.ndarray:
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    xyz = np.where(f**3 > _EPSILON, f**3, (116 * f - 16) / _KAPPA) * _WHITE
    linear = np.clip(xyz @ _XYZ_TO_RGB.T, 0.0, 1.0)
    v = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)
    out: np.ndarray = np.clip(np.floor(v * 255 + 0.5), 0, 255).astype(np.uint8)
    return out


def palette(rgb: np.ndarray, count: int = 5) -> list[Swatch]:
    """Up to count colours of an 8-bit sRGB image (H, W, 3), largest share first."""
    lab = srgb_to_lab(rgb.reshape(-1, 3)) * np.array([_LIGHTNESS_WEIGHT, 1.0, 1.0])
    total = lab.shape[0]
    if total == 0:
        return []
    points, weights = _pool(lab)
    centres = _seed(points, weights, min(_CLUSTERS, len(points)))
    for _ in range(_ITERATIONS):
        labels = _nearest(points, centres)
        mass = np.bincount(labels, weights=weights, minlength=len(centres))
        sums = np.stack(
            [
                np.bincount(labels, weights=points[:, i] * weights, minlength=len(centres))
                for i in range(3)
            ],
            axis=1,
        )
        keep = mass > 0
        centres = sums[keep] / mass[keep, None]
    # Shares are counted on the pixels themselves, against the final centres.
    centres, mass = _merge(centres, np.bincount(_nearest(lab, centres), minlength=len(centres)))
    order = sorted(range(len(centres)), key=lambda i: (-mass[i], tuple(centres[i])))[:count]
    colours = lab_to_srgb8(centres[order] / np.array([_LIGHTNESS_WEIGHT, 1.0, 1.0]))
    return [
        Swatch("#" + bytes(int(c) for c in colour).hex(), round(float(mass[i]) / total, 4))
        for colour, i in zip(colours, order, strict=True)
    ]


def _pool(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cells = np.floor(lab / _CELL).astype(np.int64) + 512  # every axis within 0..1023
    keys = cells[:, 0] << 20 | cells[:, 1] << 10 | cells[:, 2]
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    sums = np.stack([np.bincount(inverse, weights=lab[:, i]) for i in range(3)], axis=1)
    return sums / counts[:, None], counts.astype(np.float64)


def _seed(points: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """Deterministic k-means++: the heaviest point, then each time the point that is
    heaviest and farthest from every centre so far."""
    chosen = [int(np.argmax(weights))]
    nearest = ((points - points[chosen[0]]) ** 2).sum(axis=1)
    while len(chosen) < k:
        score = weights * nearest
        best = int(np.argmax(score))
        if score[best] <= 0:
            break
        chosen.append(best)
        nearest = np.minimum(nearest, ((points - points[best]) ** 2).sum(axis=1))
    return points[chosen].copy()


def _nearest(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    # |p - c|^2 = |p|^2 - 2 p.c + |c|^2; |p|^2 is the same for every centre.
    distances = (centres**2).sum(axis=1)[None, :] - 2 * points @ centres.T
    labels: np.ndarray = np.argmin(distances, axis=1)
    return labels


def _merge(centres: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge the closest pair of centres while it is under the merge distance."""
    centres = centres[counts > 0]
    mass = counts[counts > 0].astype(np.float64)
    while len(centres) > 1:
        gaps = np.sqrt(((centres[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2))
        np.fill_diagonal(gaps, np.inf)
        i, j = np.unravel_index(int(np.argmin(gaps)), gaps.shape)
        if gaps[i, j] >= _MERGE_DISTANCE:
            break
        merged = (centres[i] * mass[i] + centres[j] * mass[j]) / (mass[i] + mass[j])
        centres[i], mass[i] = merged, mass[i] + mass[j]
        centres, mass = np.delete(centres, j, axis=0), np.delete(mass, j)
    return centres, mass
