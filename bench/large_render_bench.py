"""Renders larger than the render source (``w=2400``): where the time goes, and the levers.

    .venv/bin/python bench/large_render_bench.py [--photos DIR] [--repeat 2] [--width 2400]
        [--score] [--out FILE.json]

A render that does not fit in the 1920x1080 render source (engine/render_source.py)
decodes the original. For each corpus photo, in process, ``--repeat`` times (the fastest
run is kept: the machine is shared, and the fastest is the least disturbed):

1. ``render``: the whole render as the service makes it today (engine.render from the
   original, WebP at the registry's fast settings), CPU and wall;
2. the parts: ``decode`` (the original, with libjpeg's scale-on-load to the planned size,
   then Lanczos: what render's first step does) and the WebP encode of its result at
   effort 0, 1 and 2 (renders use the registry's ``fast_options``);
3. the large render source (``render_source.LARGE_BOX``, JPEG q92 4:4:4 as the base
   copy), for the originals that get one (``render_source.large_source_size``): what it
   costs to make once, its size, the decode and the whole render from it;
4. ``--score``: bytes and SSIMULACRA2 (``pip install ssimulacra2``) of each WebP effort
   against the unencoded pixels, so effort 0's extra bytes are read at equal quality.

CPU is ``time.process_time`` (all threads of this process): other work on the machine
moves wall time, not CPU time. Prints a table; ``--out`` writes JSON.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PHOTOS = Path("/work/shared/corpus/photos")
EFFORTS = (0, 1, 2)


def fastest(work: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """(CPU ms, wall ms, result) of the run with the least CPU."""
    best: tuple[float, float, Any] | None = None
    for _ in range(repeat):
        started_cpu, started = time.process_time(), time.perf_counter()
        result = work()
        cpu = (time.process_time() - started_cpu) * 1000
        wall = (time.perf_counter() - started) * 1000
        if best is None or cpu < best[0]:
            best = (round(cpu, 1), round(wall, 1), result)
    assert best is not None
    return best


def ssimulacra2(reference: Any, data: bytes) -> float:
    import pyvips
    from ssimulacra2 import compute_ssimulacra2

    decoded = pyvips.Image.new_from_buffer(data, "").pngsave_buffer(compression=0)
    original = reference.pngsave_buffer(compression=0)
    return round(float(compute_ssimulacra2(io.BytesIO(original), io.BytesIO(decoded))), 2)


def measure(path: Path, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    from urllib.parse import parse_qsl

    from imgpipe.domain.media import ImageFormat, Limits
    from imgpipe.domain.render_options import parse_options
    from imgpipe.engine import render_source
    from imgpipe.engine.plan import plan
    from imgpipe.engine.probe import probe
    from imgpipe.engine.render import render
    from imgpipe.engine.steps.decode import decode, jpeg_shrink

    limits = Limits(1 << 30, 1 << 30, 500)
    options = parse_options(parse_qsl(f"w={args.width}"))
    facts = probe(path, limits)
    planned = plan(options, facts.upright_size)
    row: dict[str, Any] = {
        "photo": path.name,
        "original": list(facts.upright_size),
        "output": list(planned.output),
        "jpeg_shrink": jpeg_shrink(facts, planned.decode),
    }
    cpu, wall, _ = fastest(lambda: render(path, facts, options, ImageFormat.WEBP), args.repeat)
    row["render"] = {"cpu_ms": cpu, "wall_ms": wall}
    cpu, wall, image = fastest(
        lambda: decode(path, facts, planned.decode, all_frames=False, fast_shrink=True),
        args.repeat,
    )
    row["decode"] = {"cpu_ms": cpu, "wall_ms": wall}
    row["webp"] = {}
    for effort in EFFORTS:
        cpu, wall, data = fastest(
            functools.partial(image.webpsave_buffer, Q=80, effort=effort, keep="none"),
            args.repeat,
        )
        entry: dict[str, Any] = {"cpu_ms": cpu, "wall_ms": wall, "bytes": len(data)}
        if args.score:
            entry["ssimulacra2"] = ssimulacra2(image, data)
        row["webp"][f"effort_{effort}"] = entry
    size = render_source.source_for(facts, planned.decode)
    if size is not None:  # the copy a render of this size reads (the large one, here)
        cpu, _, copy = fastest(lambda: render_source.make_source(path, facts, size), 1)
        copy_path = scratch / f"{path.stem}.large.jpg"
        copy_path.write_bytes(copy)
        copy_facts = probe(copy_path, limits)
        decode_cpu, _, _ = fastest(
            lambda: decode(copy_path, copy_facts, planned.decode, all_frames=False), args.repeat
        )
        render_cpu, render_wall, _ = fastest(
            lambda: render(
                copy_path,
                copy_facts,
                options,
                ImageFormat.WEBP,
                planned=planned,
                render_source=True,
            ),
            args.repeat,
        )
        row["large_source"] = {
            "size": list(size),
            "kib": round(len(copy) / 1024),
            "make_cpu_ms": cpu,
            "decode_cpu_ms": decode_cpu,
            "render": {"cpu_ms": render_cpu, "wall_ms": render_wall},
        }
    # What a render of this size costs once the service reads the copy render_source
    # .source_for names (services/render.py).
    row["served"] = row["large_source"]["render"] if "large_source" in row else row["render"]
    print(f"  {path.name}: {row['served']}", file=sys.stderr)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--width", type=int, default=2400)
    parser.add_argument("--score", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    paths = sorted(args.photos.glob("*.jpg"))
    if not paths:
        print(f"no photos in {args.photos}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT / "src"))
    from imgpipe import engine

    engine.configure()
    with tempfile.TemporaryDirectory() as scratch:
        rows = [measure(path, args, Path(scratch)) for path in paths]
    results = {"width": args.width, "photos": len(rows), "rows": rows}
    print_table(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def print_table(results: dict[str, Any]) -> None:
    print(
        f"\nw={results['width']} WebP q80 from the original, CPU ms (fastest run); "
        "bytes in KiB, SSIMULACRA2 with --score\n"
    )
    print(
        "| photo | output | render | decode | effort 2 | effort 1 | effort 0 "
        "| large copy: make / decode / render |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")

    def cell(entry: dict[str, Any]) -> str:
        score = f", {entry['ssimulacra2']}" if "ssimulacra2" in entry else ""
        return f"{entry['cpu_ms']:.0f} ({entry['bytes'] // 1024} KiB{score})"

    for row in results["rows"]:
        big = row.get("large_source")
        big_cell = (
            f"{big['make_cpu_ms']:.0f} / {big['decode_cpu_ms']:.0f} / {big['render']['cpu_ms']:.0f}"
            if big
            else "-"
        )
        webp = row["webp"]
        print(
            f"| {row['photo']} | {row['output'][0]}x{row['output'][1]} "
            f"| {row['render']['cpu_ms']:.0f} | {row['decode']['cpu_ms']:.0f} "
            f"| {cell(webp['effort_2'])} | {cell(webp['effort_1'])} | {cell(webp['effort_0'])} "
            f"| {big_cell} |"
        )
    for label, key in (("from the original", "render"), ("as served", "served")):
        cpu = [row[key]["cpu_ms"] for row in results["rows"]]
        wall = [row[key]["wall_ms"] for row in results["rows"]]
        print(
            f"render {label}: CPU median {statistics.median(cpu):.0f} ms, max {max(cpu):.0f} ms; "
            f"wall median {statistics.median(wall):.0f} ms, max {max(wall):.0f} ms"
        )


if __name__ == "__main__":
    sys.exit(main())
