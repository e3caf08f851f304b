#!/usr/bin/env python3
"""Peak memory of `imgpipe process` on one very large JPEG (default 20000x13000, 260 Mpx).

    python bench/bigjpeg_rss.py [--size WxH] [--cache-dir DIR] [--out DIR] [--one-core] [--json]

The JPEG is generated with pyvips on first use and kept in the cache directory (a temp
directory by default), keyed by size and quality. Baselines measured in the same run:
naive Pillow (pixel limit lifted) and bare pyvips. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchlib import corpus, quality
from benchlib.methods import BenchError, Method, baseline, imgpipe, imgpipe_problem, run_method
from benchlib.profiles import PROFILES, variant_filename
from benchlib.runner import MB

RSS_TARGET_MB = 500.0
JPEG_QUALITY = 85


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    try:
        size = (int(width), int(height))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if min(size) < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return size


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=parse_size, default=(20000, 13000), help="WxH")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=corpus.CACHE_DIR,
        help=f"where the generated JPEG is kept between runs (default {corpus.CACHE_DIR})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "out" / "bigjpeg",
        help="outputs and results.json (default bench/out/bigjpeg)",
    )
    parser.add_argument(
        "--one-core",
        action="store_true",
        help="pin every run to CPU 0 with VIPS_CONCURRENCY=1 (default: all cores, defaults)",
    )
    parser.add_argument(
        "--progressive",
        action="store_true",
        help="a progressive JPEG instead (the decoder then buffers every DCT coefficient)",
    )
    parser.add_argument("--skip-naive", action="store_true", help="no naive Pillow baseline")
    parser.add_argument("--skip-imgpipe", action="store_true", help="baselines only")
    parser.add_argument("--json", action="store_true", help="print results as JSON only")
    return parser.parse_args(argv)


def big_jpeg(cache_dir: Path, size: tuple[int, int], *, progressive: bool) -> Path:
    """The cached test JPEG, generated (atomically) if it is not there yet."""
    width, height = size
    kind = "-progressive" if progressive else ""
    path = cache_dir / f"big-{width}x{height}-q{JPEG_QUALITY}{kind}.jpg"
    if not path.exists():
        log(f"generating {path} (once; cached for later runs) ...")
        start = time.perf_counter()
        corpus.write_jpeg(path, width, height, quality=JPEG_QUALITY, progressive=progressive)
        log(f"generated in {time.perf_counter() - start:.1f} s")
    return path


def choose_methods(args: argparse.Namespace) -> list[Method]:
    methods = []
    if not args.skip_imgpipe:
        problem = imgpipe_problem()
        if problem:
            raise BenchError(f"imgpipe CLI not usable ({problem}); try --skip-imgpipe")
        methods.append(imgpipe(1, one_core=args.one_core))
    methods.append(baseline("pyvips", "bare pyvips", one_core=args.one_core))
    if not args.skip_naive:
        methods.append(
            baseline("naive", "naive Pillow", "--no-pixel-limit", one_core=args.one_core)
        )
    return methods


def check_outputs(out: Path, stem: str) -> list[str]:
    """Sizes of the variants written."""
    found = []
    for profile in PROFILES:
        path = out / stem / variant_filename(profile)
        if not path.exists():
            raise BenchError(f"missing output {path}")
        width, height = quality.image_size(path)
        found.append(f"{profile.name} {width}x{height}")
    return found


def measure(method: Method, src: Path, out: Path, stem: str) -> dict[str, Any]:
    log(f"running {method.label} ...")
    result, reported = run_method(method, src, out, expected=1)
    return {
        "label": method.label,
        "seconds": result.wall_s,
        "reported_seconds": reported,
        "peak_rss_mb": result.peak_rss / MB,
        "max_single_process_rss_mb": result.max_single_rss / MB,
        "other_load_cores": result.foreign_cores,
        "outputs": check_outputs(out, stem),
    }


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    methods = choose_methods(args)
    image = big_jpeg(args.cache_dir, args.size, progressive=args.progressive)
    if args.progressive:
        # imgpipe refuses progressive JPEGs over MAX_PROGRESSIVE_PIXELS (100 Mpx) by
        # default, for exactly the memory measured here; lift the budget to measure it.
        os.environ["IMGPIPE_MAX_PROGRESSIVE_PIXELS"] = str(args.size[0] * args.size[1])
    src = tmp / "src"
    corpus.stage([image], src)
    corpus.warm_file_cache([image])
    results: dict[str, Any] = {
        "image": str(image),
        "size": list(args.size),
        "megapixels": args.size[0] * args.size[1] / 1e6,
        "bytes": image.stat().st_size,
        "progressive": args.progressive,
        "one_core": args.one_core,
        "cpus": len(os.sched_getaffinity(0)),
        "methods": {},
    }
    for method in methods:
        out = args.out.resolve() / method.key
        results["methods"][method.key] = measure(method, src, out, image.stem)
    imgpipe_run = results["methods"].get("imgpipe-1")
    if imgpipe_run:
        results["target"] = {
            "peak_rss_mb_below": RSS_TARGET_MB,
            "pass": imgpipe_run["peak_rss_mb"] < RSS_TARGET_MB,
        }
    return results


def report_lines(results: dict[str, Any]) -> list[str]:
    width, height = results["size"]
    lines = [
        f"{width}x{height} {'progressive ' if results['progressive'] else ''}JPEG "
        f"q{JPEG_QUALITY} ({results['megapixels']:.0f} Mpx, "
        f"{results['bytes'] / MB:.1f} MB): {results['image']}",
        "",
        f"{'method':34} {'seconds':>8} {'peak RSS MB':>12} {'1-proc RSS MB':>14} "
        f"{'other load':>11}",
    ]
    for run_ in results["methods"].values():
        lines.append(
            f"{run_['label']:34} {run_['seconds']:8.2f} {run_['peak_rss_mb']:12.0f} "
            f"{run_['max_single_process_rss_mb']:14.0f} {run_['other_load_cores']:11.2f}   "
            f"{', '.join(run_['outputs'])}"
        )
    target = results.get("target")
    if target:
        verdict = "PASS" if target["pass"] else "MISS"
        peak = results["methods"]["imgpipe-1"]["peak_rss_mb"]
        lines += ["", f"imgpipe peak RSS {peak:.0f} MB (target < {RSS_TARGET_MB:.0f})  {verdict}"]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="imgpipe-bigjpeg-") as tmp:
            results = run(args, Path(tmp))
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = report_lines(results)
    if args.json:
        print(json.dumps(results, indent=2))
        log("\n".join(lines))
    else:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
