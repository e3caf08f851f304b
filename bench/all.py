#!/usr/bin/env python3
"""Every performance target of issue 17 in one run: `make bench`.

    .venv/bin/python bench/all.py [--only batch,renders,hits,quality,s3] [--seconds 10]
        [--out DIR]

Runs each benchmark below in its own process, one after the other (so none disturbs
another), each measuring imgpipe beside its own baseline in the same run, and prints one
table: what was measured, the figure, its target, ok or MISS. Each benchmark's full JSON
goes to ``OUT/<name>.json`` (default ``bench/out/all``), and its progress to stderr.

| section | script | baseline in the same run |
|---|---|---|
| batch | process_bench.py | bare pyvips and naive Pillow, one core each |
| renders | render_bench.py | thumbor (if installed) for WebP; targets for AVIF and w=2400 |
| hits | cache_hit_bench.py | a plain Starlette handler serving the same bytes |
| quality | quality_auto_bench.py | q85 |
| s3 | s3_render_bench.py | the originals' size (what a render read before migration 0010) |

Exit 0 when every benchmark ran (a missed target is a MISS line, not an error), 1 when
one failed to run. A full run takes about 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
THUMBOR = Path("/tmp/thumbor-venv/bin/thumbor")

Row = tuple[str, str]  # (what, "ok: ..." or "MISS: ...")


@dataclass(frozen=True)
class Section:
    name: str
    script: str
    argv: Callable[[argparse.Namespace, Path], list[str]]
    # From the script's JSON: an object, or (s3_render_bench) a list of them.
    rows: Callable[[Any], list[Row]]


def _verdict(ok: bool, text: str) -> str:
    return f"{'ok' if ok else 'MISS'}: {text}"


def _batch_rows(result: dict[str, Any]) -> list[Row]:
    rows = []
    methods = result.get("methods", {})
    for ratio in result.get("ratios", []):
        if ratio.get("target") is None:
            continue
        text = f"{ratio['value']:.2f}x (target >= {ratio['target']}x)"
        rows.append((f"photos/s {ratio['name']}", _verdict(ratio["pass"], text)))
    if "imgpipe-1" in methods and "pyvips" in methods:
        ratio = methods["imgpipe-1"]["output_bytes"] / methods["pyvips"]["output_bytes"]
        rows.append(("output bytes imgpipe-1 / pyvips", f"info: {ratio:.3f}x"))
        startup = result.get("startup_s", {})
        without = result.get("ratio_without_startup")
        if without is not None:
            rows.append(
                (
                    "photos/s imgpipe-1 / pyvips without start-up",
                    f"info: {without:.2f}x (start-up {startup['imgpipe-1'] * 1000:.0f}"
                    f" ms against {startup['pyvips'] * 1000:.0f} ms)",
                )
            )
    return rows


def _targets_rows(result: dict[str, Any]) -> list[Row]:
    """Scripts that report ``targets: {name: "ok: ..." | "MISS: ..."}``."""
    return [(name, str(text)) for name, text in result.get("targets", {}).items()]


def _s3_rows(results: list[dict[str, Any]]) -> list[Row]:
    """Cold renders on S3 from the render source: no original read, and what they read."""
    rows = []
    for result in results:
        originals = result["store_reads"]["original"]["gets"]
        per_render = result["store_bytes_per_render"] / 1024
        rows.append(
            (
                f"{result['scenario']}: originals read by {result['renders']} cold renders",
                _verdict(
                    originals == 0,
                    f"{originals} (target 0); {per_render:.0f} KiB read "
                    f"per render, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms",
                ),
            )
        )
    return rows


def _render_argv(args: argparse.Namespace, out: Path) -> list[str]:
    argv = ["--seconds", str(args.seconds), "--hit-connections", "4", "--skip-source-quality"]
    if not THUMBOR.exists():
        print(f"all: no thumbor at {THUMBOR}: WebP renders without it", file=sys.stderr)
        argv.append("--skip-thumbor")
    return [*argv, "--out", str(out)]


SECTIONS = (
    Section(
        "batch",
        "process_bench.py",
        lambda args, out: ["--repeat", "3", "--json", "--out", str(out.parent / "batch")],
        _batch_rows,
    ),
    Section("renders", "render_bench.py", _render_argv, _targets_rows),
    Section(
        "hits",
        "cache_hit_bench.py",
        lambda args, out: ["--seconds", str(args.seconds), "--out", str(out)],
        _targets_rows,
    ),
    Section(
        "quality", "quality_auto_bench.py", lambda args, out: ["--out", str(out)], _targets_rows
    ),
    Section("s3", "s3_render_bench.py", lambda args, out: ["--out", str(out)], _s3_rows),
)


def run(section: Section, args: argparse.Namespace) -> tuple[list[Row], str | None]:
    """The section's rows, or why it did not run."""
    out = args.out / f"{section.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, str(BENCH / section.script), *section.argv(args, out)]
    print(f"all: {section.name}: {' '.join(argv[1:])}", file=sys.stderr, flush=True)
    done = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        return [], f"{section.script} exited {done.returncode}"
    if out.is_file():
        text = out.read_text()
    else:  # process_bench prints its JSON on stdout (its --out is a folder)
        text = done.stdout
        out.write_text(text)
    try:
        return section.rows(json.loads(text)), None
    except (ValueError, KeyError) as exc:
        return [], f"{section.script}: unreadable result ({exc})"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated sections (default: all)")
    parser.add_argument("--seconds", type=int, default=10, help="per load test")
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "all")
    args = parser.parse_args()
    chosen = set(args.only.split(",")) if args.only else {s.name for s in SECTIONS}
    unknown = chosen - {s.name for s in SECTIONS}
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    table: list[tuple[str, str, str]] = []
    failures = []
    for section in SECTIONS:
        if section.name not in chosen:
            continue
        rows, failure = run(section, args)
        if failure:
            failures.append(failure)
            table.append((section.name, "(did not run)", failure))
        table += [(section.name, what, verdict) for what, verdict in rows]
    width = max((len(what) for _, what, _ in table), default=10)
    print(f"{'section':8}  {'figure':{width}}  result")
    for name, what, verdict in table:
        print(f"{name:8}  {what:{width}}  {verdict}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
