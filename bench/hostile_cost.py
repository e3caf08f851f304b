#!/usr/bin/env python3
"""Cost of small hostile uploads (issue 15, item 3): time and peak memory per case.

    python bench/hostile_cost.py [--src DIR] [--timeout S] [--cases a,b] [--json]

Each case is generated (small files, cached in a temp directory for the run) and run in a
fresh child process, as the worker runs an upload: ``probe`` (the upload gate), then every
built-in profile through ``render_variants`` with ``PROCESS_TIMEOUT_S`` as the deadline,
then two cold renders of ``w=800`` (probe + render, as services/render.py does; the
second probe is the cached one when the tree has the probe cache). Peak RSS is the
child's own high-water mark (and its children's, for decoders run in a child process)
above what the interpreter held after its imports.

``--src`` picks the tree measured: the checkout's ``src`` by default; point it at an
older checkout's ``src`` for "before" figures. Target: no upload under 25 MiB holds a
worker past PROCESS_TIMEOUT_S + 5 s or raises its RSS by more than 1.5 GB.

Cases: ``rle_bmp`` (a 2 MB RLE8 BMP declaring 16384x16384), ``anim_webp`` (500 frames
at 732x733 in a few hundred KB), ``png16`` (a 16-bit RGBA interlaced PNG declaring
16384x16384, 2 MB), ``tiff_ifds`` (a TIFF of 200,000 directories), ``alpha`` (a
6000x4000 RGBA PNG: CPU per cold render, from the original or from its render source).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET_EXTRA_S = 5.0
TARGET_RSS_MB = 1536.0
CASES = ("rle_bmp", "anim_webp", "png16", "tiff_ifds", "alpha")


# --- inputs ---------------------------------------------------------------------------


def rle_bmp(path: Path) -> None:
    width = height = 16384
    row = bytes((255, 7)) * (width // 255) + bytes((width % 255, 9)) + b"\0\0"
    data = row * height + b"\0\1"
    palette = b"".join(bytes((i, 255 - i, i // 2, 0)) for i in range(256))
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(data), 2835, 2835, 256, 0)
    head = b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset)
    path.write_bytes(head + info + palette + data)


def anim_webp(path: Path) -> None:
    import pyvips

    frames = []
    for i in range(500):  # flat frames with a moving square: a few hundred bytes each
        frame = pyvips.Image.black(732, 733).new_from_image([40, 90, 160])
        frame = frame.draw_rect([255, 255, 255], (i * 7) % 700, (i * 3) % 700, 24, 24, fill=True)
        frames.append(frame.cast("uchar"))
    strip = pyvips.Image.arrayjoin(frames, across=1).copy(interpretation="srgb")
    strip.set_type(pyvips.GValue.gint_type, "page-height", 733)
    strip.webpsave(str(path), Q=50, effort=0, min_size=False)


def png16(path: Path) -> None:
    width = height = 16384
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4)]
    passes += [(1, 0, 2, 2), (0, 1, 1, 2)]
    raw = 0
    for x0, y0, dx, dy in passes:
        cols = (width - x0 + dx - 1) // dx
        rows = (height - y0 + dy - 1) // dy
        raw += rows * (1 + cols * 8)  # filter byte + RGBA at 16 bits
    compressor = zlib.compressobj(9)
    chunk = bytes(1 << 24)
    idat = bytearray()
    while raw > 0:
        idat += compressor.compress(chunk[: min(raw, len(chunk))])
        raw -= len(chunk)
    idat += compressor.flush()

    def png_chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 1)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", bytes(idat))
        + png_chunk(b"IEND", b"")
    )


def tiff_ifds(path: Path) -> None:
    count = 200_000
    entries = [(256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1)]
    entries += [(273, 4, 1, 8), (277, 3, 1, 1), (278, 3, 1, 1), (279, 4, 1, 1)]
    first = 12
    chain = first + 2 + 12 * len(entries) + 4
    body = struct.pack("<H", len(entries))
    for tag, kind, n, value in entries:
        packed = struct.pack("<H", value) + b"\0\0" if kind == 3 else struct.pack("<I", value)
        body += struct.pack("<HHI", tag, kind, n) + packed
    body += struct.pack("<I", chain)
    empties = bytearray()
    for i in range(1, count):
        at = chain + 6 * (i - 1)
        empties += struct.pack("<HI", 0, at + 6 if i < count - 1 else 0)
    path.write_bytes(b"II*\0" + struct.pack("<I", first) + b"\x80\0\0\0" + body + bytes(empties))


def alpha(path: Path) -> None:
    import pyvips

    ramp = pyvips.Image.xyz(6000, 4000).extract_band(0) / 24
    noise = pyvips.Image.gaussnoise(6000, 4000, mean=128, sigma=30, seed=5)
    mask = pyvips.Image.xyz(6000, 4000).extract_band(1) / 16
    image = ramp.bandjoin([noise, (ramp + noise) / 2, mask]).cast("uchar")
    image.copy(interpretation="srgb").pngsave(str(path), compression=1)


MAKERS = {
    "rle_bmp": rle_bmp,
    "anim_webp": anim_webp,
    "png16": png16,
    "tiff_ifds": tiff_ifds,
    "alpha": alpha,
}


# --- the measured child ---------------------------------------------------------------


def child(case: str, path: Path, timeout_s: float) -> dict[str, Any]:
    import resource
    import time

    from imgpipe.domain.errors import ImgpipeError
    from imgpipe.domain.media import Limits
    from imgpipe.domain.profiles import ProfileSet
    from imgpipe.domain.render_options import parse_options
    from imgpipe.engine import configure, render_source
    from imgpipe.engine.deadline import Deadline
    from imgpipe.engine.pipeline import render_variants
    from imgpipe.engine.probe import probe
    from imgpipe.engine.render import render

    configure()
    limits = Limits(26_214_400, 268_435_456, 500)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out: dict[str, Any] = {"case": case, "bytes": path.stat().st_size}

    def timed(label: str, work: Any) -> Any:
        started, cpu = time.monotonic(), time.process_time()
        try:
            value = work()
            out[label] = "ok"
        except ImgpipeError as exc:
            value = None
            out[label] = exc.code
        out[f"{label}_s"] = round(time.monotonic() - started, 3)
        out[f"{label}_cpu_s"] = round(time.process_time() - cpu, 3)
        return value

    facts = timed("probe", lambda: probe(path, limits))
    if facts is not None:
        specs = [v for p in ProfileSet.builtin().select(None) for v in p.variants()]
        result = timed("process", lambda: render_variants(path, facts, specs, Deadline(timeout_s)))
        if result is not None:
            out["variants"] = {
                name: getattr(o, "code", "ok") for name, o in result.outcomes.items()
            }
        options = parse_options([("w", "800")])
        timed(
            "render_original", lambda: render(path, facts, options, None, None, Deadline(timeout_s))
        )
        size = render_source.source_size(facts)
        if case == "alpha" and size is not None:
            source = path.with_suffix(".source")
            source.write_bytes(render_source.make_source(path, facts, size))
            source_facts = probe(source, limits)
            out["source_bytes"] = source.stat().st_size
            timed(
                "render_source",
                lambda: render(
                    source,
                    source_facts,
                    options,
                    None,
                    None,
                    Deadline(timeout_s),
                    planned=None,
                    render_source=True,
                ),
            )
    self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out["rss_rise_mb"] = round(max(self_peak - baseline, children_peak), 1)
    return out


# --- driver ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=ROOT / "src")
    parser.add_argument("--timeout", type=float, default=30.0, help="PROCESS_TIMEOUT_S")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]), args.timeout)))
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="hostile-") as folder:
        for case in args.cases.split(","):
            path = Path(folder) / f"{case}.input"
            MAKERS[case](path)
            env = {**os.environ, "PYTHONPATH": str(args.src.resolve())}
            command = [sys.executable, __file__, "--timeout", str(args.timeout)]
            done = subprocess.run(
                [*command, "--child", case, str(path)], env=env, capture_output=True, text=True
            )
            if done.returncode != 0:
                results.append({"case": case, "crashed": done.stderr.strip().splitlines()[-1:]})
            else:
                results.append(json.loads(done.stdout))
            row = results[-1]
            worst = max(
                (v for k, v in row.items() if k.endswith("_s") and "cpu" not in k), default=0
            )
            held = worst <= args.timeout + TARGET_EXTRA_S
            light = row.get("rss_rise_mb", 0) <= TARGET_RSS_MB
            row["target"] = "ok" if held and light and "crashed" not in row else "MISS"
            if not args.json:
                print(json.dumps(row), flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
