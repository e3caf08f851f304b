"""Render cache hits against the ceiling: a plain Starlette handler serving the same bytes.

    .venv/bin/python bench/cache_hit_bench.py [--seconds 10] [--rounds 2] [--connections 4]
        [--photo PATH] [--out FILE.json]

What it does, on loopback, in one run:

1. starts one ``imgpipe serve`` (SQLite, local disk, embedded workers) on a fresh data
   dir, uploads one corpus photo, waits until its variants are done (so no background
   work runs while anything is measured), signs a render URL (``w=400&format=webp``)
   and requests it once, so every later request is a cache hit;
2. starts a plain Starlette app under uvicorn (the same uvicorn settings as
   ``imgpipe serve``: one process, ``log_level=warning``) whose one route reads the same
   render's bytes from a file on every request and returns them with the same media
   type: what serving the file costs with no signature, no database, no framework
   dependencies, no middleware;
3. runs ``wrk -t2 -c4 -d10s --latency`` against each in turn, imgpipe first, for
   ``--rounds`` rounds (alternating, so other load on the machine hits both alike), and
   prints each round's requests/s, p50, p99 and the ratio of imgpipe's requests/s to the
   plain handler's in the same round. Every figure is printed: on a shared 2-core
   machine they move with other people's load.

Targets (issue 17 item 3): imgpipe at >= 40% of the plain handler's requests/s, and a
p99 under 10 ms, at 4 connections. Exit 0 when every run worked whatever the figures,
1 when a request failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from render_bench import DEFAULT_PHOTOS, SIGNING_KEY, wait_http, wrk
from stack import free_port, imgpipe_env, running, wait_all_done

DEFAULT_PHOTO = "lake-landscape_samsung-s730.jpg"
TARGET_RATIO = 0.40
TARGET_P99_MS = 10.0


def plain_app(path: Path, media_type: str) -> Any:
    """The ceiling: one route that reads the file and returns it."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def render(request: Request) -> Response:
        return Response(path.read_bytes(), media_type=media_type)

    return Starlette(routes=[Route("/v1/render/{name}", render)])


def serve_plain(path: Path, media_type: str, port: int) -> None:
    import uvicorn

    uvicorn.run(plain_app(path, media_type), host="127.0.0.1", port=port, log_level="warning")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTOS / DEFAULT_PHOTO)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--plain", nargs=3, metavar=("FILE", "MEDIA_TYPE", "PORT"))
    args = parser.parse_args()
    if args.plain:  # the plain server's own process (started below)
        serve_plain(Path(args.plain[0]), args.plain[1], int(args.plain[2]))
        return 0
    photo = args.photo if args.photo.exists() else sorted(DEFAULT_PHOTOS.glob("*.jpg"))[0]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from imgpipe.domain.signing import sign_render_url

    with tempfile.TemporaryDirectory(prefix="imgpipe-hit-bench-") as tmp:
        work = Path(tmp)
        env = imgpipe_env(work, signing_key=SIGNING_KEY)
        with running(work, env) as stack:
            stack.run("serve", "--port", str(stack.port), log_name="serve")
            stack.wait_healthy(timeout=60)
            with httpx.Client(base_url=stack.base_url, timeout=120) as http:
                uploaded = http.post("/v1/images", files={"file": (photo.name, photo.read_bytes())})
                uploaded.raise_for_status()
                image_id = uploaded.json()["id"]
                wait_all_done(http, [image_id], timeout=300)
                path = sign_render_url(
                    f"/v1/render/{image_id}?w=400&format=webp", SIGNING_KEY.encode(), None
                )
                first = http.get(path)
                first.raise_for_status()
                again = http.get(path)
                assert again.headers["x-render-cache"] == "hit", again.headers
            body = work / "render.bin"
            body.write_bytes(first.content)
            media_type = first.headers["content-type"]
            plain_port = free_port()
            plain = subprocess.Popen(
                [sys.executable, __file__, "--plain", str(body), media_type, str(plain_port)],
                stdin=subprocess.DEVNULL,
            )
            try:
                plain_url = f"http://127.0.0.1:{plain_port}{path}"
                wait_http(plain_url)
                rounds = []
                for n in range(args.rounds):
                    time.sleep(1)
                    mine = wrk(stack.base_url + path, args.seconds, args.connections)
                    time.sleep(1)
                    ceiling = wrk(plain_url, args.seconds, args.connections)
                    rounds.append(
                        {
                            "round": n + 1,
                            "imgpipe": mine,
                            "plain": ceiling,
                            "ratio": round(mine["rps"] / ceiling["rps"], 3),
                        }
                    )
                    print(
                        f"round {n + 1}: imgpipe {mine['rps']:.0f} req/s p50 {mine['p50_ms']} ms "
                        f"p99 {mine['p99_ms']} ms | plain {ceiling['rps']:.0f} req/s "
                        f"p99 {ceiling['p99_ms']} ms | ratio {rounds[-1]['ratio']:.2f}",
                        file=sys.stderr,
                    )
            finally:
                plain.terminate()
                plain.wait(10)
    result = {
        "command": f"wrk -t2 -c{args.connections} -d{args.seconds}s --latency",
        "photo": photo.name,
        "bytes": len(first.content),
        "rounds": rounds,
        "targets": {
            "ratio": f">= {TARGET_RATIO}: "
            + ("ok" if all(r["ratio"] >= TARGET_RATIO for r in rounds) else "MISS"),
            "p99_ms": f"< {TARGET_P99_MS}: "
            + ("ok" if all(r["imgpipe"]["p99_ms"] < TARGET_P99_MS for r in rounds) else "MISS"),
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    failed = any(r["imgpipe"]["errors"] or r["plain"]["errors"] for r in rounds)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
