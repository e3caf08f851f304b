"""quality=auto against quality 85, judged by SSIMULACRA2 (issue 17 item 4).

Per corpus photo (800x600 fit, WebP unless ``--format``): the bytes of each auto level
against q85, SSIMULACRA2 of each and of q85 (the ``ssimulacra2`` package, BSD-3-Clause,
in the ``bench`` extra: an independent judge of engine/ssimulacra2.py), the design's SSIM
(engine/auto_quality.floor_ssim, as scikit-image computes it), the quality each level
chose and whether it met its target, and the search's CPU (all of encode_auto) against
one encode at q85. Prints a table, the medians and an ok or MISS line per target (median
bytes at good <= 0.75 of q85, no photo under its level's SSIMULACRA2 target, eco and good
CPU <= 2x one encode on average); ``--out FILE`` writes them as JSON. Exit 0 when it ran,
whatever the figures (bench/README.md).

``--agreement``: engine/ssimulacra2.py against the package at qualities 30-95, with the
largest difference (exit 1 above auto_quality.AGREEMENT).
``--fit``: per level, the prediction (the 5x5 sample's threshold, a quality offset and
the gate: engine/auto_quality.PREDICTIONS) with the fewest median bytes at which the
whole image's encode keeps the target on every photo; about 2 minutes for WebP, 4 for
AVIF. ``--fast``: profiles' encodes become renders' (the format's fast_options), for
measuring ``q=auto`` renders or fitting RENDER_PREDICTIONS.

    .venv/bin/python bench/quality_auto_bench.py [--photos DIR] [--repeat N] [--out FILE]
        [--fast] [--agreement | --fit]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyvips

from imgpipe.domain.media import ImageFormat
from imgpipe.domain.render_options import AutoQuality
from imgpipe.engine import auto_quality, ssimulacra2
from imgpipe.engine.encode import _encode, encode_detailed

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "photos"
BOX = (800, 600)
LEVELS = (AutoQuality.ECO, AutoQuality.GOOD, AutoQuality.BEST)
AGREEMENT_QUALITIES = (30, 50, 70, 85, 95)


def package_score(reference: Any, data: bytes) -> float:
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


def measure(
    photos: list[Path], fmt: ImageFormat, repeat: int, out: Path | None = None, fast: bool = False
) -> int:
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
        one, base = cpu(lambda image=image: _encode(image, fmt, 85, fast), repeat)
        base_s2 = package_score(image, base)
        q85_scores.append(base_s2)
        line = f"{path.stem[:28]:28} {len(base):7d} {base_s2:5.1f} {floor(image, base):6.4f}"
        for level in LEVELS:
            took, found = cpu(
                lambda image=image, level=level: encode_detailed(image, fmt, level, fast=fast),
                repeat,
            )
            score, ssim = package_score(image, found.data), floor(image, found.data)
            ratio = len(found.data) / len(base)
            ratios[level].append(ratio)
            cpus[level].append(took / one)
            scores[level].append(score)
            target = auto_quality.LEVELS[level].target
            if level is AutoQuality.BEST:
                if found.target_met and ssim <= target:
                    misses.append(f"{path.stem} best: said met at SSIM {ssim:.4f}")
            elif score < target:
                misses.append(f"{path.stem} {level.value}: SSIMULACRA2 {score:.1f} < {target}")
            met = "yes" if found.target_met else "no"
            line += f" | {found.quality:>6} {ratio:5.2f} {score:5.1f} {ssim:6.4f}"
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
    search = {lv: statistics.mean(cpus[lv]) for lv in (AutoQuality.ECO, AutoQuality.GOOD)}
    slow = [lv.value for lv, mean in search.items() if mean > 2]
    targets = {
        "good_bytes_vs_q85": f"{'ok' if good <= 0.75 else 'MISS'}: median {good:.2f}x q85's"
        " bytes (target <= 0.75x)",
        "every_photo_at_its_target": ("ok" if not misses else "MISS")
        + f": {len(misses)} below their level's target",
        "search_cpu": f"{'ok' if not slow else 'MISS'}: "
        + ", ".join(f"{lv.value} {mean:.1f}x" for lv, mean in search.items())
        + " one encode (target <= 2x)",
    }
    print()
    for text in targets.values():
        print(text)
    for miss in misses:
        print("  " + miss)
    if out is not None:
        summary: dict[str, Any] = {
            level.value: {
                "median_bytes_vs_q85": statistics.median(ratios[level]),
                "ssimulacra2_median": statistics.median(scores[level]),
                "ssimulacra2_min": min(scores[level]),
                "search_cpu_vs_one_encode_mean": statistics.mean(cpus[level]),
            }
            for level in LEVELS
        }
        summary["q85_ssimulacra2_median"] = statistics.median(q85_scores)
        out.write_text(json.dumps({"levels": summary, "targets": targets}, indent=2) + "\n")
    return 0  # a missed target is a MISS line, not a failure (bench/README.md)


FIT_THRESHOLDS = [t / 2 for t in range(110, 161)]  # 55.0-80.0, half points
FIT_OFFSETS = range(-12, 13)


def fit(photos: list[Path], fmt: ImageFormat, fast: bool = False) -> int:
    """Per level: the prediction (auto_quality.Prediction) with the fewest median bytes at
    which the whole image's encode at the prediction keeps the target on every photo,
    from each photo's whole-image score and bytes at every quality, its sample's trial
    score at every quality (the search runs on those) and the score of the sample's tiles
    cut from the whole image's encode (the gate: the lowest of those at the prediction,
    rounded down to a tenth, so every photo's prediction stands unchecked). ``fast``: with
    renders' encodes, for auto_quality.RENDER_PREDICTIONS."""
    curves = []
    for path in photos:
        image = load(path)
        whole = ssimulacra2.Reference(image)
        sample, _ = auto_quality.make_sample(image)
        part = ssimulacra2.Reference(sample)
        scores, sizes, trials, tiles = {}, {}, {}, {}
        for quality in range(auto_quality.QUALITY_RANGE[0], 86):
            data = _encode(image, fmt, quality, fast)
            decoded = ssimulacra2.rgb_pixels(pyvips.Image.new_from_buffer(data, ""))
            scores[quality] = whole.score_pixels(decoded)
            tiles[quality] = part.score_pixels(auto_quality.sample_pixels(decoded))
            sizes[quality] = len(data)
            trial = _encode(sample, fmt, quality, fast, trial=True)
            trials[quality] = part.score(pyvips.Image.new_from_buffer(trial, ""))
        curves.append((scores, sizes, trials, tiles))
        print(f"  {path.stem[:28]}: measured", file=sys.stderr, flush=True)
    for level in (AutoQuality.ECO, AutoQuality.GOOD):
        spec = auto_quality.LEVELS[level]
        need = spec.target + auto_quality.AGREEMENT
        low = auto_quality.QUALITY_RANGE[0]
        candidates = []
        for threshold in FIT_THRESHOLDS:
            found = [
                auto_quality.search(trials.__getitem__, replace(spec, threshold=threshold))[0]
                for _, _, trials, _ in curves
            ]
            for offset in FIT_OFFSETS:
                predicted = [min(spec.ceiling, max(low, q + offset)) for q in found]
                pairs = list(zip(predicted, curves, strict=True))
                if all(scores[q] >= need for q, (scores, _, _, _) in pairs):
                    ratio = statistics.median(sizes[q] / sizes[85] for q, (_, sizes, _, _) in pairs)
                    gate = math.floor(10 * min(tiles[q] for q, (_, _, _, tiles) in pairs)) / 10
                    mean_quality = statistics.mean(predicted)
                    candidates.append((ratio, mean_quality, abs(offset), threshold, offset, gate))
        if not candidates:
            print(f"{level.value}: no prediction keeps the target on every photo")
            continue
        ratio, _, _, threshold, offset, gate = min(candidates)
        print(
            f"{level.value}: Prediction(threshold={threshold}, offset={offset}, gate={gate}):"
            f" median {ratio:.3f}x q85's bytes, every photo's prediction at its target"
            f" ({len(candidates)} of {len(FIT_THRESHOLDS) * len(FIT_OFFSETS)} pairs do)"
        )
        if gate < need:
            print(f"  the gate is under the target ({need}): some photo's tiles score lower")
    return 0


def agreement(photos: list[Path], fmt: ImageFormat) -> int:
    """engine/ssimulacra2.py against the ssimulacra2 package, per photo and quality."""
    worst = 0.0
    for path in photos:
        image = load(path)
        reference = ssimulacra2.Reference(image)
        line = f"{path.stem[:28]:28}"
        for quality in AGREEMENT_QUALITIES:
            data = _encode(image, fmt, quality)
            ours = reference.score(pyvips.Image.new_from_buffer(data, ""))
            diff = ours - package_score(image, data)
            worst = max(worst, abs(diff))
            line += f"  q{quality} {ours:5.1f} ({diff:+.3f})"
        print(line, flush=True)
    print(f"max abs difference {worst:.3f}")
    return 0 if worst <= auto_quality.AGREEMENT else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--format", default="webp", choices=["webp", "avif", "jpeg"])
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds per encode")
    parser.add_argument("--fit", action="store_true")
    parser.add_argument("--agreement", action="store_true")
    parser.add_argument(
        "--fast",
        action="store_true",
        help="renders' encodes (the format's fast_options): measure or fit RENDER_PREDICTIONS",
    )
    parser.add_argument("--out", type=Path, help="write the figures and verdicts as JSON")
    args = parser.parse_args()
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not photos:
        print(f"no photos in {args.photos}", file=sys.stderr)
        return 2
    fmt = ImageFormat(args.format)
    if args.agreement:
        return agreement(photos, fmt)
    if args.fit:
        return fit(photos, fmt, args.fast)
    return measure(photos, fmt, args.repeat, args.out, args.fast)


if __name__ == "__main__":
    sys.exit(main())
