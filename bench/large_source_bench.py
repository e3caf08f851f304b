"""The worker's large render source: what it adds to an upload, what it saves a render.

    .venv/bin/python bench/large_source_bench.py [--photos DIR] [--rounds 2]
        [--before-src OLD/src] [--out FILE.json]

The worker makes the large render source (the original fitted in 3840x2160, for renders
such as ``w=2400``: engine/render_source.py) after it settles an image's job, so the
upload-to-done latency should not move, the worker spends one more decode per qualifying
upload, and the first ``w=2400`` render no longer makes the copy itself.

Two ``imgpipe serve`` processes on fresh data dirs (SQLite, local disk, embedded
workers): ``after``, this checkout, and with ``--before-src`` ``before``, an older
checkout's ``src`` (put first on its PYTHONPATH). Each corpus photo goes to each server
in turn, one upload at a time (the order alternating per photo, so both see the same
machine), ``--rounds`` times with distinct bytes (a JPEG comment). Per upload:

1. ``upload_to_done_ms``: the POST's own time plus the server's ``completed_at -
   created_at`` (every variant done), so polling adds nothing;
2. ``copy_after_done_ms`` (``after``, originals that get a large copy): from the status
   first read as done until the copy's key is in the store (polled every 10 ms): the
   window in which a ``w=2400`` render would still make the copy itself;
3. ``job_cpu_ms``: the server's CPU (its process tree, psutil) from the POST until the
   job is over (done, and the copy stored where one is made): upload, variants, copy;
4. ``first_w2400_ms`` and ``next_w2400_ms``: the first ``w=2400&format=webp`` render of
   the image once its job is over, and a second one with another ``q`` (wall, client side).

Prints a table per server and photo and p50/p99 per server; ``--out`` writes JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from measure import percentile
from stack import Stack, imgpipe_env, running, unique_jpeg

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PHOTOS = Path("/work/shared/corpus/photos")
SIGNING_KEY = "bench-signing-key"
FIGURES = ("upload_to_done_ms", "copy_after_done_ms", "job_cpu_ms", "first_w2400_ms")


def _when(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def large_source_key(photo: Path, data: bytes) -> str | None:
    """The large copy's key for these bytes, or None where the original gets none."""
    import hashlib

    from imgpipe.domain.media import Limits
    from imgpipe.engine import render_source
    from imgpipe.engine.probe import probe
    from imgpipe.storage import keys

    if render_source.large_source_size(probe(photo, Limits(1 << 30, 1 << 30, 500))) is None:
        return None
    sha = hashlib.sha256(data).hexdigest()
    return keys.render_source(sha, render_source.SOURCE_VERSION, large=True)


def one_upload(stack: Stack, photo: Path, data: bytes, expects_copy: bool) -> dict[str, Any]:
    from imgpipe.domain.signing import sign_render_url

    key = large_source_key(photo, data) if expects_copy else None
    row: dict[str, Any] = {"photo": photo.name, "large_copy": key is not None}
    with httpx.Client(base_url=stack.base_url, timeout=120) as http:
        cpu = stack.cpu_seconds()
        began = time.monotonic()
        response = http.post("/v1/images", files={"file": (photo.name, data, "image/jpeg")})
        response.raise_for_status()
        post_s = time.monotonic() - began
        image_id = response.json()["id"]
        while not (resource := http.get(f"/v1/images/{image_id}").json())["completed_at"]:
            time.sleep(0.01)
        seen_done = time.monotonic()
        assert resource["status"] == "done", resource["status"]
        done_s = post_s + _when(resource["completed_at"]) - _when(resource["created_at"])
        row["upload_to_done_ms"] = round(done_s * 1000, 1)
        if key is not None:
            while not (stack.data_dir / "objects" / key).is_file():
                if time.monotonic() - seen_done > 120:
                    raise SystemExit(f"{photo.name}: no large render source after 120 s")
                time.sleep(0.01)
            row["copy_after_done_ms"] = round((time.monotonic() - seen_done) * 1000, 1)
        time.sleep(0.3)  # the job's last steps (a metric, the file's close) and quiet
        row["job_cpu_ms"] = round((stack.cpu_seconds() - cpu) * 1000, 1)
        for name, q in (("first_w2400_ms", 49), ("next_w2400_ms", 50)):
            url = sign_render_url(
                f"/v1/render/{image_id}?w=2400&format=webp&q={q}", SIGNING_KEY.encode()
            )
            began = time.monotonic()
            rendered = http.get(url)
            rendered.raise_for_status()
            row[name] = round((time.monotonic() - began) * 1000, 1)
    return row


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for figure in (*FIGURES, "next_w2400_ms"):
        for subset, chosen in (("all", rows), ("large_copy", [r for r in rows if r["large_copy"]])):
            values = [r[figure] for r in chosen if figure in r]
            if values:
                out[f"{figure}_{subset}"] = {
                    "n": len(values),
                    "p50": round(percentile(values, 50), 1),
                    "p99": round(percentile(values, 99), 1),
                    "max": round(max(values), 1),
                }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--before-src", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    photos = sorted(args.photos.glob("*.jpg"))
    if not photos:
        print(f"no photos in {args.photos}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT / "src"))

    sides = (
        {"after": None} if args.before_src is None else {"before": args.before_src, "after": None}
    )
    rows: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    with (
        tempfile.TemporaryDirectory(prefix="large-source-bench-") as work,
        contextlib.ExitStack() as stacks,
    ):
        servers: dict[str, Stack] = {}
        for side, src in sides.items():
            env = imgpipe_env(Path(work) / side, signing_key=SIGNING_KEY)
            if src is not None:
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
            stack = stacks.enter_context(running(Path(work) / side, env))
            stack.run("serve", "--port", str(stack.port), log_name="serve")
            stack.wait_healthy(timeout=60)
            servers[side] = stack
        n = 0
        for _ in range(args.rounds):
            for photo in photos:
                n += 1
                data = unique_jpeg(photo.read_bytes(), n)
                order = list(servers) if n % 2 else list(reversed(servers))
                for side in order:
                    row = one_upload(servers[side], photo, data, expects_copy=side == "after")
                    rows[side].append(row)
                    print(f"  {side}: {row}", file=sys.stderr)
    results = {
        "photos": len(photos),
        "rounds": args.rounds,
        "sides": {side: {"summary": summary(r), "rows": r} for side, r in rows.items()},
    }
    for side, result in results["sides"].items():
        print(f"\n{side}:")
        for name, figure in result["summary"].items():
            print(f"  {name}: {figure}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
