#!/usr/bin/env python3
"""Time and peak memory of a 24 MP camera RAW (DNG) to the three built-in profiles.

    python bench/raw_bench.py [--size WxH] [--runs N] [--json]

Generates a DNG on first use (6000x4000 by default, 24 MP: a 12-bit RGGB Bayer mosaic of
smooth gradients, edges and sensor noise, uncompressed, with an as-shot white balance and
a D65 colour matrix) and keeps it in $TMPDIR/imgpipe-bench/. Then, each run in a child
process of its own:

- `imgpipe process <dir> --out ... --workers 1 --json` (the batch CLI: probe, one LibRaw
  demosaic, three WebP variants, analysis), wall time and peak RSS of the process tree;
- the engine alone in-process, timed by stage: probe (LibRaw identify, no sensor data
  read), the demosaic into a libvips image, and the three variants from it.

Target (issue 12): peak RSS under 1 GB. See bench/README.md for the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib.runner import MB, parse_json_summary, run_measured

RSS_TARGET_MB = 1000.0
REPO = Path(__file__).resolve().parent.parent
IMGPIPE = Path(sys.executable).with_name("imgpipe")
ONE_WORKER = ("--workers", "1", "--json")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_dng(path: Path, width: int, height: int) -> None:
    import numpy as np

    sys.path.insert(0, str(REPO / "tests"))
    from rawimages import bayer, dng

    rng = np.random.default_rng(12)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.empty((height, width, 3), np.float32)
    rgb[..., 0] = 0.1 + 0.6 * x / width
    rgb[..., 1] = 0.1 + 0.5 * y / height
    rgb[..., 2] = 0.35 + 0.25 * np.sin(x / 37.0) * np.cos(y / 53.0)
    rgb[(x // 400 + y // 400) % 2 == 0] *= 0.6  # hard edges for the demosaic to follow
    rgb += rng.normal(0, 0.01, rgb.shape).astype(np.float32)
    np.clip(rgb, 0, 1, out=rgb)
    path.write_bytes(dng(bayer(rgb)))


def engine_child(path: Path) -> dict[str, float]:
    """Run in a child: the engine's stages on one file, timed."""
    from imgpipe.domain.media import Limits
    from imgpipe.domain.profiles import ProfileSet
    from imgpipe.engine.pipeline import Rendered, render_variants
    from imgpipe.engine.probe import probe
    from imgpipe.engine.raw import decode_raw

    limits = Limits(max_upload_bytes=1 << 30, max_pixels=268_435_456, max_frames=500)
    specs = [s for p in ProfileSet.builtin().profiles.values() for s in p.variants()]
    # Wall and CPU (every thread of the process: LibRaw and libvips use several) per stage.
    marks = [(time.perf_counter(), time.process_time())]
    facts = probe(path, limits)
    marks.append((time.perf_counter(), time.process_time()))
    decode_raw(path, facts.format).copy_memory()  # full-size AHD: a profile over half the sensor
    marks.append((time.perf_counter(), time.process_time()))
    result = render_variants(path, facts, specs)
    marks.append((time.perf_counter(), time.process_time()))
    assert all(isinstance(o, Rendered) for o in result.outcomes.values()), result.outcomes
    stages = ("probe", "full_size_demosaic", "three_variants_with_their_decode")  # 4 marks
    report: dict[str, float] = {}
    for name, (wall0, cpu0), (wall1, cpu1) in zip(stages, marks, marks[1:], strict=False):
        report[f"{name}_s"] = wall1 - wall0
        report[f"{name}_cpu_s"] = cpu1 - cpu0
    return report


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="6000x4000", help="sensor WxH (default 6000x4000)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print results as JSON only")
    parser.add_argument("--engine-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--make-dng", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    if args.engine_child:
        print(json.dumps(engine_child(args.engine_child)))
        return 0
    if args.make_dng:
        make_dng(args.make_dng, width, height)
        return 0
    cache = Path(tempfile.gettempdir()) / "imgpipe-bench" / f"raw-{width}x{height}"
    source = cache / "photo.dng"
    if not source.exists():
        log(f"generating {source} ...")
        cache.mkdir(parents=True, exist_ok=True)
        # In a child: a forked child starts with its parent's peak RSS (the kernel keeps the
        # high-water mark across fork and exec), so this process must stay small.
        subprocess.run(
            [sys.executable, __file__, "--size", args.size, "--make-dng", str(source)],
            check=True,
        )
    log(f"{source}: {source.stat().st_size / MB:.1f} MB")
    env = {**os.environ, "PYTHONPATH": str(REPO / "bench")}
    batch: list[dict[str, Any]] = []
    stages: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as out:
        for run in range(args.runs):
            # CPU seconds as well as wall time: on a shared machine wall time mostly
            # measures the neighbours, CPU time what the work itself costs.
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            result = run_measured(
                [str(IMGPIPE), "process", str(cache), "--out", f"{out}/{run}", *ONE_WORKER],
                env=env,
            )
            if result.returncode != 0:
                log(result.describe_failure())
                return 1
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
            summary = parse_json_summary(result.stdout) or {}
            batch.append(
                {
                    "wall_s": result.wall_s,
                    "cpu_s": cpu,
                    "peak_rss_mb": result.peak_rss / MB,
                    **summary,
                }
            )
            log(
                f"process run {run}: {result.wall_s:.2f} s wall, {cpu:.2f} s CPU, "
                f"peak RSS {result.peak_rss / MB:.0f} MB"
            )
            child = run_measured([sys.executable, __file__, "--engine-child", str(source)], env=env)
            if child.returncode != 0:
                log(child.describe_failure())
                return 1
            stage = json.loads(child.stdout.strip().splitlines()[-1])
            stage["peak_rss_mb"] = child.peak_rss / MB
            stages.append(stage)
            log(f"engine run {run}: " + ", ".join(f"{k} {v:.2f}" for k, v in stage.items()))
    report = {
        "size": [width, height],
        "file_mb": source.stat().st_size / MB,
        "process_wall_s_median": statistics.median(r["wall_s"] for r in batch),
        "process_cpu_s_median": statistics.median(r["cpu_s"] for r in batch),
        "process_peak_rss_mb_max": max(r["peak_rss_mb"] for r in batch),
        "engine_stages_median": {
            key: statistics.median(s[key] for s in stages) for key in stages[0]
        },
        "rss_target_mb": RSS_TARGET_MB,
        "runs": {"process": batch, "engine": stages},
    }
    report["within_target"] = report["process_peak_rss_mb_max"] < RSS_TARGET_MB
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        stages_median = report["engine_stages_median"]
        print(
            f"{width}x{height} DNG ({report['file_mb']:.0f} MB) to thumbnail, medium, large:\n"
            f"  imgpipe process: {report['process_wall_s_median']:.2f} s wall, "
            f"{report['process_cpu_s_median']:.2f} s CPU (medians of {args.runs}), "
            f"peak RSS {report['process_peak_rss_mb_max']:.0f} MB "
            f"(target < {RSS_TARGET_MB:.0f} MB)\n"
            "  engine stages: " + ", ".join(f"{k} {v:.2f}" for k, v in stages_median.items())
        )
    return 0 if report["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
