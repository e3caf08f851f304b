"""quality=auto against quality 85, judged by SSIMULACRA2 (issue 17 item 4).

Per corpus photo (800x600 fit, WebP unless ``--format``): the bytes of each auto level
against q85, SSIMULACRA2 of each (the ``ssimulacra2`` package, BSD-3-Clause: install it
with ``pip install ssimulacra2``), the design's SSIM (engine/auto_quality.floor_ssim, as
scikit-image computes it), the quality each level chose and whether it met its target,
and the search's CPU against one encode at q85. Prints a table and the medians; exit 1
when a target is missed (median bytes at good >= 25% below q85, no photo under its
level's SSIMULACRA2 target, auto CPU <= 2x one encode on average).

``--calibrate``: instead, fit each level's predictor (engine/auto_quality.PREDICTORS) to
SSIMULACRA2 over the photos' samples at qualities 20-95 and print the coefficients and
the margin (the worst over-estimate within 5 of the target) that the level's threshold
adds to its target.

    PYTHONPATH=src .venv/bin/python bench/quality_auto_bench.py [--photos DIR] [--calibrate]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyvips

from imgpipe.domain.media import ImageFormat
from imgpipe.domain.render_options import AutoQuality
from imgpipe.engine import auto_quality
from imgpipe.engine.encode import _encode, encode_detailed

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "photos"
BOX = (800, 600)
LEVELS = (AutoQuality.ECO, AutoQuality.GOOD, AutoQuality.BEST)
CALIBRATION_QUALITIES = range(20, 100, 5)


def ssimulacra2(reference: Any, data: bytes) -> float:
    from ssimulacra2 import compute_ssimulacra2

    decoded = pyvips.Image.new_from_buffer(data, "")
    a = io.BytesIO(reference.pngsave_buffer(compression=1))
    b = io.BytesIO(decoded.pngsave_buffer(compression=1))
    return float(compute_ssimulacra2(a, b))


def floor(reference: Any, data: bytes) -> float:
    decoded = pyvips.Image.new_from_buffer(data, "")
    return auto_quality.floor_ssim(
        auto_quality.rgb_array(reference), auto_quality.rgb_array(decoded)
    )


def cpu(fn: Any, repeat: int) -> tuple[float, Any]:
    start = time.process_time()
    for _ in range(repeat):
        result = fn()
    return (time.process_time() - start) / repeat, result


def load(path: Path) -> Any:
    image = pyvips.Image.thumbnail(str(path), BOX[0], height=BOX[1], size="down")
    return image.colourspace("srgb").copy_memory()


def measure(photos: list[Path], fmt: ImageFormat, repeat: int) -> int:
    head = f"{'photo':28} {'q85 B':>7} {'s2':>5} {'ssim':>6}"
    for level in LEVELS:
        name = level.value.removeprefix("auto:")
        head += f" | {name:>4} q {'ratio':>5} {'s2':>5} {'ssim':>6} {'met':>3} {'cpu':>4}"
    print(head)
    ratios: dict[AutoQuality, list[float]] = {level: [] for level in LEVELS}
    cpus: dict[AutoQuality, list[float]] = {level: [] for level in LEVELS}
    scores: dict[AutoQuality, list[float]] = {level: [] for level in LEVELS}
    misses: list[str] = []
    q85_scores = []
    for path in photos:
        image = load(path)
        one, base = cpu(lambda image=image: _encode(image, fmt, 85), repeat)
        base_s2 = ssimulacra2(image, base)
        q85_scores.append(base_s2)
        line = f"{path.stem[:28]:28} {len(base):7d} {base_s2:5.1f} {floor(image, base):6.4f}"
        for level in LEVELS:
            took, out = cpu(
                lambda image=image, level=level: encode_detailed(image, fmt, level), repeat
            )
            score, ssim = ssimulacra2(image, out.data), floor(image, out.data)
            ratio = len(out.data) / len(base)
            ratios[level].append(ratio)
            cpus[level].append(took / one)
            scores[level].append(score)
            target = auto_quality.LEVELS[level].target
            if level is AutoQuality.BEST:
                if out.target_met and ssim <= target:
                    misses.append(f"{path.stem} best: said met at SSIM {ssim:.4f}")
            elif score < target:
                misses.append(f"{path.stem} {level.value}: SSIMULACRA2 {score:.1f} < {target}")
            met = "yes" if out.target_met else "no"
            line += f" | {out.quality:>6} {ratio:5.2f} {score:5.1f} {ssim:6.4f}"
            line += f" {met:>3} {took / one:4.2f}"
        print(line, flush=True)
    print(f"\nmedian q85 SSIMULACRA2 {statistics.median(q85_scores):.1f}")
    for level in LEVELS:
        print(
            f"{level.value:10} median bytes/q85 {statistics.median(ratios[level]):.2f}"
            f" (range {min(ratios[level]):.2f}-{max(ratios[level]):.2f}),"
            f" SSIMULACRA2 median {statistics.median(scores[level]):.1f}"
            f" min {min(scores[level]):.1f},"
            f" CPU/one q85 encode mean {statistics.mean(cpus[level]):.2f}"
            f" max {max(cpus[level]):.2f}"
        )
    good = statistics.median(ratios[AutoQuality.GOOD])
    slow = [lv.value for lv in (AutoQuality.ECO, AutoQuality.GOOD) if statistics.mean(cpus[lv]) > 2]
    print(f"\ngood saves {1 - good:.0%} (target >= 25%): {'ok' if good <= 0.75 else 'MISS'}")
    print(f"eco/good CPU <= 2x one encode: {'ok' if not slow else 'MISS ' + ', '.join(slow)}")
    print("every photo at its level's target: " + ("ok" if not misses else "MISS"))
    for miss in misses:
        print("  " + miss)
    return 0 if good <= 0.75 and not misses and not slow else 1


def calibrate(photos: list[Path], fmt: ImageFormat) -> int:
    rows: list[tuple[list[float], float]] = []
    for path in photos:
        image = load(path)
        sample, _ = auto_quality.make_sample(image)
        reference = auto_quality.rgb_array(sample)
        for quality in CALIBRATION_QUALITIES:
            score = ssimulacra2(image, _encode(image, fmt, quality))
            decoded = pyvips.Image.new_from_buffer(_encode(sample, fmt, quality), "")
            rows.append((auto_quality.features(reference, auto_quality.rgb_array(decoded)), score))
        print(f"{path.stem}: done", file=sys.stderr, flush=True)
    for level in (AutoQuality.ECO, AutoQuality.GOOD):
        target = auto_quality.LEVELS[level].target
        near = [(f, s) for f, s in rows if abs(s - target) <= 10]
        x = np.array([f for f, _ in near])
        y = np.array([s for _, s in near])
        a = np.hstack([np.ones((len(x), 1)), -x])
        coef, *_ = np.linalg.lstsq(a, y, rcond=None)
        residual = a @ coef - y
        margin = float(residual[np.abs(y - target) <= 5].max())
        weights = ", ".join(f"{c:.2f}" for c in coef[1:])
        print(
            f"{level.name}: ({coef[0]:.2f}, ({weights}))  rmse {np.sqrt(np.mean(residual**2)):.2f}"
        )
        print(f"  threshold = target {target} + margin {margin:.2f} = {target + margin:.1f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--format", default="webp", choices=["webp", "avif", "jpeg"])
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds per encode")
    parser.add_argument("--calibrate", action="store_true")
    args = parser.parse_args()
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not photos:
        print(f"no photos in {args.photos}", file=sys.stderr)
        return 2
    fmt = ImageFormat(args.format)
    return calibrate(photos, fmt) if args.calibrate else measure(photos, fmt, args.repeat)


if __name__ == "__main__":
    sys.exit(main())
