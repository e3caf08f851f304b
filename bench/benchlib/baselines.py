"""The two baselines, run in their own process by the benchmarks:

    python -m benchlib.baselines {naive,pyvips} SRC_DIR OUT_DIR [--no-pixel-limit]

Writes OUT_DIR/<path relative to SRC_DIR without extension>/<profile>.webp, the layout of
`imgpipe process`, and prints a JSON summary `{images, failed, seconds}` on stdout.
Imports only the library it measures, so the process's RSS is that library's.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib.corpus import list_images
from benchlib.profiles import PROFILES, QUALITY, variant_filename

Processor = Callable[[Path, Path], None]
Summary = dict[str, Any]


def naive_pillow(src: Path, dest: Path) -> None:
    """What most Python code does: decode everything, resize with Lanczos, save."""
    from PIL import Image, ImageOps

    with Image.open(src) as opened:
        rgb = ImageOps.exif_transpose(opened).convert("RGB")
    for profile in PROFILES:
        box = (profile.width, profile.height)
        if profile.cover:
            variant = ImageOps.fit(rgb, box, Image.Resampling.LANCZOS)
        else:
            variant = rgb.copy()
            variant.thumbnail(box, Image.Resampling.LANCZOS)
        variant.save(dest / variant_filename(profile), "WEBP", quality=QUALITY)


def bare_pyvips(src: Path, dest: Path) -> None:
    """libvips used directly: one `thumbnail` (shrink-on-load, auto-rotate) per profile."""
    import pyvips

    for profile in PROFILES:
        options = {"crop": "centre"} if profile.cover else {}
        variant = pyvips.Image.thumbnail(
            str(src), profile.width, height=profile.height, size="down", **options
        )
        variant.webpsave(str(dest / variant_filename(profile)), Q=QUALITY)


PROCESSORS: dict[str, Processor] = {"naive": naive_pillow, "pyvips": bare_pyvips}


def shard(images: list[Path], index: int, count: int) -> list[Path]:
    """Images of shard `index` of `count`: largest files first, each to the lightest shard
    so far (deterministic, so every shard process computes the same split)."""
    loads = [0] * count
    mine = []
    for path in sorted(images, key=lambda p: (-p.stat().st_size, p.name)):
        lightest = loads.index(min(loads))
        loads[lightest] += path.stat().st_size
        if lightest == index:
            mine.append(path)
    return sorted(mine)


def run(method: str, src_dir: Path, out_dir: Path, part: tuple[int, int] = (0, 1)) -> Summary:
    """Process every image under `src_dir` (or one shard of them); a failure is counted,
    reported, and skipped."""
    process = PROCESSORS[method]
    images = shard(list_images(src_dir), *part)
    failed: list[dict[str, str]] = []
    start = time.perf_counter()
    for src in images:
        dest = out_dir / src.relative_to(src_dir).with_suffix("")
        dest.mkdir(parents=True, exist_ok=True)
        try:
            process(src, dest)
        except Exception as exc:  # a benchmark reports every failure and goes on
            traceback.print_exc()
            failed.append({"path": str(src), "error": repr(exc)})
    seconds = time.perf_counter() - start
    return {"images": len(images), "failed": failed, "seconds": seconds}


def fan_out(args: argparse.Namespace, processes: int) -> Summary:
    """Run this module once per shard at the same time, shard i pinned to CPU i, with
    VIPS_CONCURRENCY=1: perfectly independent work, the machine's scaling ceiling."""
    start = time.perf_counter()
    env = {**os.environ, "VIPS_CONCURRENCY": "1"}
    base = [sys.executable, "-m", "benchlib.baselines", args.method, str(args.src_dir)]
    base += [str(args.out_dir), *(["--no-pixel-limit"] if args.no_pixel_limit else [])]
    children = []
    for index in range(processes):
        command = [*base, "--shard", f"{index}/{processes}"]
        children.append(
            subprocess.Popen(
                command,
                env=env,
                stdout=subprocess.PIPE,
                text=True,
                preexec_fn=functools.partial(os.sched_setaffinity, 0, {index}),
            )
        )
    parts = [json.loads(child.communicate()[0]) for child in children]
    return {
        "images": sum(p["images"] for p in parts),
        "failed": [f for p in parts for f in p["failed"]],
        "seconds": time.perf_counter() - start,
    }


def parse_part(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    return int(index), int(count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("method", choices=sorted(PROCESSORS))
    parser.add_argument("src_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument(
        "--no-pixel-limit",
        action="store_true",
        help="lift Pillow's decompression-bomb guard (big-image test)",
    )
    parser.add_argument("--shard", type=parse_part, default=(0, 1), help="I/N: one part only")
    parser.add_argument(
        "--processes", type=int, default=1, help="N>1: N shard processes, one per CPU"
    )
    args = parser.parse_args(argv)
    if args.no_pixel_limit:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None
    if args.processes > 1:
        summary = fan_out(args, args.processes)
    else:
        summary = run(args.method, args.src_dir, args.out_dir, args.shard)
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
