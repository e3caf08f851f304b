"""AVIF encoder settings for on-demand renders: time, and bytes against WebP at equal quality.

    .venv/bin/python bench/avif_settings_bench.py [--photos DIR] [--repeat 3]
        [--map-q 50,65,80,90] [--out FILE.json]

(needs ``pip install ssimulacra2``, a pure-Python port of libjxl's metric.)

What it does, in process, for each corpus photo:

1. makes the photo's render source (engine/render_source.py: the 1920x1080 copy a cold
   render reads) and decodes it to an 800x600 fit, as ``engine.render`` does: the
   unencoded pixels are the reference every encode below is scored against;
2. quality: encodes those pixels as WebP at q (effort FAST_WEBP_EFFORT, as renders do)
   and, for each candidate AVIF setting, at AVIF Q 25-85 in steps of 5; scores each
   encode with SSIMULACRA2 against the reference, and finds, by interpolating between
   the two Qs that bracket it, the AVIF Q and bytes that score what WebP scored: bytes
   at equal quality, not at equal Q (the two formats' Q scales differ);
3. time: ``--repeat`` times per photo and setting, decode-from-render-source + resize +
   encode at the setting's equal-quality Q (its median over the photos). CPU time
   (``time.process_time``, all threads of this process) is the figure to read: other
   work on the machine moves wall time, not CPU time. Wall time (``perf_counter``) is
   printed beside it; libvips and libaom use ``VIPS_CONCURRENCY`` threads (2 here).
4. ``--map-q``: for one setting (``--map-setting``, the one renders use), which AVIF Q
   scores what WebP scores at each of these q: the data behind the registry's
   ``quality_map`` (domain/formats.py).

Prints a table per section and, with ``--out``, the whole result as JSON.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PHOTOS = Path("/work/shared/corpus/photos")
AVIF_Q_GRID = tuple(range(25, 90, 5))
BOX = "w=800&h=600"


@dataclass(frozen=True)
class Setting:
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None  # VIPS_CONCURRENCY for this setting (libaom's threads)
    same_q: bool = False  # encodes at WebP's q, as renders did before quality_map


SETTINGS = (
    Setting("effort 2, Q = q (before)", {"effort": 2}, same_q=True),
    Setting("effort 2", {"effort": 2}),
    Setting("effort 1", {"effort": 1}),
    Setting("effort 0", {"effort": 0}),
    Setting("effort 0, 1 thread", {"effort": 0}, threads=1),
    Setting("effort 0, tune=ssim", {"effort": 0, "tune": "ssim"}),
    Setting("effort 0, 4:4:4", {"effort": 0, "subsample_mode": "off"}),
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def at_score(target: float, curve: list[tuple[int, float, int]]) -> tuple[float, float] | None:
    """(Q, bytes) where a (Q, score, bytes) curve first reaches ``target``, interpolated
    linearly in Q and in log bytes between the bracketing points; None above its top."""
    for (q0, s0, b0), (q1, s1, b1) in itertools.pairwise(curve):
        if s0 >= target:
            return float(q0), float(b0)
        if s0 < target <= s1:
            t = (target - s0) / (s1 - s0)
            return q0 + t * (q1 - q0), math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0)))
    q, s, b = curve[-1]
    return (float(q), float(b)) if s >= target else None


class Scorer:
    """SSIMULACRA2 of encoded bytes against one reference image."""

    def __init__(self, reference: Any) -> None:
        self.reference = reference.pngsave_buffer(compression=0)

    def __call__(self, data: bytes) -> float:
        import pyvips
        from ssimulacra2 import compute_ssimulacra2

        decoded = pyvips.Image.new_from_buffer(data, "").pngsave_buffer(compression=0)
        return float(compute_ssimulacra2(io.BytesIO(self.reference), io.BytesIO(decoded)))


def avif(image: Any, setting: Setting, quality: int) -> bytes:
    import pyvips

    options = {"compression": "av1", "keep": "none", **setting.options, "Q": quality}
    data: bytes = pyvips.Operation.call("heifsave_buffer", image, **options)
    return data


def webp(image: Any, quality: int) -> bytes:
    from imgpipe.engine.encode import FAST_WEBP_EFFORT

    data: bytes = image.webpsave_buffer(Q=quality, effort=FAST_WEBP_EFFORT, keep="none")
    return data


@dataclass
class Photo:
    name: str
    decode: Callable[[], Any]  # render source -> 800x600, as engine.render decodes it


def prepare(paths: list[Path], scratch: Path) -> list[Photo]:
    from urllib.parse import parse_qsl

    from imgpipe.domain.media import Limits
    from imgpipe.domain.render_options import parse_options
    from imgpipe.engine import render_source
    from imgpipe.engine.plan import plan
    from imgpipe.engine.probe import probe
    from imgpipe.engine.steps.decode import decode

    limits = Limits(1 << 30, 1 << 30, 500)
    options = parse_options(parse_qsl(BOX))
    photos = []
    for path in paths:
        facts = probe(path, limits)
        size = render_source.source_size(facts)
        if size is None:
            continue
        copy = scratch / f"{path.stem}.source.jpg"
        copy.write_bytes(render_source.make_source(path, facts, size))
        copy_facts = probe(copy, limits)
        target = plan(options, facts.upright_size).decode

        def load(c: Path = copy, f: Any = copy_facts, t: tuple[int, int] = target) -> Any:
            return decode(c, f, t, all_frames=False)

        photos.append(Photo(path.name, load))
    return photos


Curve = list[tuple[int, float, int]]  # (AVIF Q, SSIMULACRA2, bytes)
_CURVES: dict[tuple[str, tuple[tuple[str, Any], ...]], Curve] = {}


def curve(photo: Photo, image: Any, score: Scorer, setting: Setting) -> Curve:
    """The setting's (Q, score, bytes) over AVIF_Q_GRID; threads change the time, not
    the bytes, so settings that differ only in threads share one."""
    key = (photo.name, tuple(sorted(setting.options.items())))
    if key not in _CURVES:
        _CURVES[key] = [
            (q, score(data), len(data)) for q in AVIF_Q_GRID for data in [avif(image, setting, q)]
        ]
    return _CURVES[key]


def quality(photos: list[Photo], settings: tuple[Setting, ...], webp_q: int) -> dict[str, Any]:
    """Per setting: equal-quality AVIF Q and bytes per photo, against WebP at ``webp_q``
    (for a ``same_q`` setting: its bytes and score at WebP's own q)."""
    out: dict[str, Any] = {s.name: [] for s in settings}
    for photo in photos:
        image = photo.decode()
        score = Scorer(image)
        reference = webp(image, webp_q)
        webp_score = score(reference)
        for setting in settings:
            if setting.same_q:
                data = avif(image, setting, webp_q)
                found: tuple[float, float] | None = (float(webp_q), float(len(data)))
                avif_score = round(score(data), 2)
            else:
                found = at_score(webp_score, curve(photo, image, score, setting))
                avif_score = None
            out[setting.name].append(
                {
                    "photo": photo.name,
                    "webp_bytes": len(reference),
                    "ssimulacra2": round(webp_score, 2),
                    "avif_q": None if found is None else round(found[0], 1),
                    "avif_bytes": None if found is None else round(found[1]),
                    "ratio": None if found is None else round(found[1] / len(reference), 3),
                    "avif_ssimulacra2": avif_score,
                }
            )
        print(f"  quality: {photo.name} WebP q{webp_q} scores {webp_score:.1f}", file=sys.stderr)
    return out


def timing(photos: list[Photo], setting: Setting, quality: int, repeat: int) -> dict[str, Any]:
    import pyvips

    before = pyvips.concurrency_get()
    if setting.threads:
        pyvips.concurrency_set(setting.threads)
    cpu, wall = [], []
    try:
        for photo in photos:
            for _ in range(repeat):
                started_cpu, started = time.process_time(), time.perf_counter()
                avif(photo.decode(), setting, quality)
                cpu.append((time.process_time() - started_cpu) * 1000)
                wall.append((time.perf_counter() - started) * 1000)
    finally:
        pyvips.concurrency_set(before)
    return {"avif_q": quality} | times(cpu, wall)


def webp_timing(photos: list[Photo], webp_q: int, repeat: int) -> dict[str, Any]:
    cpu, wall = [], []
    for photo in photos:
        for _ in range(repeat):
            started_cpu, started = time.process_time(), time.perf_counter()
            webp(photo.decode(), webp_q)
            cpu.append((time.process_time() - started_cpu) * 1000)
            wall.append((time.perf_counter() - started) * 1000)
    return times(cpu, wall)


def times(cpu: list[float], wall: list[float]) -> dict[str, Any]:
    def spread(values: list[float]) -> dict[str, float]:
        return {
            "median": round(statistics.median(values), 1),
            "p99": round(percentile(values, 99), 1),
        }

    return {"cpu_ms": spread(cpu), "wall_ms": spread(wall)}


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    matched = [r for r in rows if r["ratio"] is not None]
    return {
        "matched": f"{len(matched)}/{len(rows)}",
        "avif_q_median": round(statistics.median(r["avif_q"] for r in matched), 1)
        if matched
        else None,
        "bytes_vs_webp_median": round(statistics.median(r["ratio"] for r in matched), 3)
        if matched
        else None,
        "bytes_vs_webp_range": [min(r["ratio"] for r in matched), max(r["ratio"] for r in matched)]
        if matched
        else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--webp-q", type=int, default=80)
    parser.add_argument("--map-q", default="50,65,80,90")
    parser.add_argument("--only", help="setting names to run, separated by ;")
    parser.add_argument("--map-setting", default="effort 0", help="the setting --map-q maps")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    paths = sorted(args.photos.glob("*.jpg"))
    if not paths:
        print(f"no photos in {args.photos}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT / "src"))
    import pyvips

    from imgpipe import engine

    engine.configure()
    settings: tuple[Setting, ...] = SETTINGS
    if args.only:
        settings = tuple(s for s in SETTINGS if s.name in args.only.split(";"))
    default = next(s for s in SETTINGS if s.name == args.map_setting)
    results: dict[str, Any] = {
        "photos": len(paths),
        "vips_concurrency": pyvips.concurrency_get(),
        "box": BOX,
        "webp_q": args.webp_q,
    }
    with tempfile.TemporaryDirectory() as scratch:
        photos = prepare(paths, Path(scratch))
        print(f"avif_settings_bench: {len(photos)} photos", file=sys.stderr)
        per_photo = quality(photos, settings, args.webp_q)
        results["webp"] = webp_timing(photos, args.webp_q, args.repeat)
        table = []
        for setting in settings:
            found = summary(per_photo[setting.name])
            q = args.webp_q if setting.same_q else round(found["avif_q_median"] or 90)
            print(f"  time: {setting.name} at Q{q}", file=sys.stderr)
            table.append(
                {"setting": setting.name, "options": setting.options, "threads": setting.threads}
                | found
                | timing(photos, setting, q, args.repeat)
            )
        results["settings"] = table
        results["per_photo"] = per_photo
        mapping = []
        for q in (int(v) for v in args.map_q.split(",") if v):
            rows = quality(photos, (default,), q)[default.name]
            mapping.append({"webp_q": q} | summary(rows))
        results["quality_map"] = {"setting": default.options, "rows": mapping}

    print_tables(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def print_tables(results: dict[str, Any]) -> None:
    webp_row = results["webp"]
    print(
        f"\n800x600 from the render source, {results['photos']} photos, VIPS_CONCURRENCY "
        f"{results['vips_concurrency']}; WebP q{results['webp_q']} "
        f"(effort 2): CPU {webp_row['cpu_ms']['median']}/{webp_row['cpu_ms']['p99']} ms, "
        f"wall {webp_row['wall_ms']['median']}/{webp_row['wall_ms']['p99']} ms (median/p99)\n"
    )
    print(
        "| AVIF setting | Q for equal SSIMULACRA2 (median) | CPU ms median / p99 "
        "| wall ms median / p99 | bytes vs WebP, median (range) | matched |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for row in results["settings"]:
        low, high = row["bytes_vs_webp_range"] or (None, None)
        print(
            f"| {row['setting']} | {row['avif_q']} | {row['cpu_ms']['median']} / "
            f"{row['cpu_ms']['p99']} | {row['wall_ms']['median']} / {row['wall_ms']['p99']} | "
            f"{row['bytes_vs_webp_median']} ({low}-{high}) | {row['matched']} |"
        )
    print("\n| WebP q | AVIF Q scoring the same (median) | AVIF bytes vs WebP, median |")
    print("|---:|---:|---:|")
    for row in results["quality_map"]["rows"]:
        print(f"| {row['webp_q']} | {row['avif_q_median']} | {row['bytes_vs_webp_median']} |")


if __name__ == "__main__":
    sys.exit(main())
