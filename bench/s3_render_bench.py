"""Cold renders on S3: latency, and the bytes each one reads from the store.

    .venv/bin/python bench/s3_render_bench.py [--before-src OLD/src] [--after-src src]
        [--photos DIR] [--rounds 3] [--scenarios before,after,upgraded] [--out FILE.json]

What it does, on loopback, for each scenario in turn:

1. starts moto's S3 server in a process of its own (bench/s3_render_bench.py --moto PORT),
   behind a WSGI wrapper that counts every GetObject (requests and body bytes) by kind
   of key: originals, render sources, cached renders (a miss is a 404) and the rest;
2. starts ``imgpipe serve`` (SQLite, embedded workers, ``IMGPIPE_STORAGE_URL=s3://...``,
   ``IMGPIPE_S3_ENDPOINT_URL``) with the code of ``--before-src`` or ``--after-src``
   (PYTHONPATH), uploads the corpus photos and waits until every one is processed;
3. stops it and starts a fresh ``imgpipe serve`` (a cold process: empty probe cache and
   lookup cache), zeroes the counters, and makes ``--rounds`` rounds of cold renders,
   one request at a time: every photo at ``w=800&h=600&format=webp`` with a distinct
   ``q`` per request, so each is a miss (checked: ``x-render-cache: miss``);
4. prints, per scenario: p50, p99 and mean latency, the store's GetObject requests and
   bytes by kind (per render and in total), and the server's CPU seconds.

Scenarios: ``before`` uploads and renders with ``--before-src`` (an older checkout's
``src``, e.g. a worktree of the commit before migration 0010); ``after``
with ``--after-src``; ``upgraded`` uploads with before (rows without facts) and renders
with after (serve applies migration 0010 on start): its first round probes each original
once and records its facts, later rounds read none. Exit 0 when every request worked
whatever the figures, 1 otherwise. On a shared 2-core machine every figure moves with
other people's load; moto serves from memory in its own process, so reads cost its CPU
(Python) rather than a network: a real S3 adds tens of ms per MB fetched.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from measure import percentile  # noqa: E402
from render_bench import DEFAULT_PHOTOS, SIGNING_KEY, wait_http  # noqa: E402
from stack import free_port, imgpipe_env, running, wait_all_done  # noqa: E402

COUNTS = "/__bench__/counts"
RESET = "/__bench__/reset"
KINDS = ("original", "source", "render", "variant", "other")

# --- the counting S3 server (its own process) -------------------------------------------


def _kind(path: str) -> str:
    if "/originals/" in path:
        return "original"
    if "/source-v" in path:
        return "source"
    if "/renders/" in path:
        return "render"
    if "/variants/" in path:
        return "variant"
    return "other"


class CountingS3:
    """moto's S3 app, counting GetObject requests and response body bytes by key kind."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, int]] = {}

    def _record(self, kind: str, status: int, size: int) -> None:
        with self._lock:
            entry = self._counts.setdefault(kind, {"gets": 0, "bytes": 0, "misses": 0})
            if status < 300:
                entry["gets"] += 1
                entry["bytes"] += size
            else:
                entry["misses"] += 1

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in (COUNTS, RESET):
            with self._lock:
                if path == RESET:
                    self._counts = {}
                body = json.dumps(self._counts).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        # A GetObject names a key and no sub-resource (a listing has a query).
        if environ["REQUEST_METHOD"] != "GET" or environ.get("QUERY_STRING"):
            return self.app(environ, start_response)
        status: list[int] = []

        def starting(code: str, headers: Any, *args: Any) -> Any:
            status.append(int(code.split()[0]))
            return start_response(code, headers, *args)

        return self._counted(self.app(environ, starting), _kind(path), status)

    def _counted(self, result: Iterable[bytes], kind: str, status: list[int]) -> Iterator[bytes]:
        size = 0
        try:
            for chunk in result:
                size += len(chunk)
                yield chunk
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
            self._record(kind, status[0] if status else 500, size)


def serve_moto(port: int) -> None:
    from moto.moto_server.werkzeug_app import create_backend_app
    from werkzeug.serving import make_server

    from s3server import _QuietHandler

    app = CountingS3(create_backend_app("s3"))
    make_server(
        "127.0.0.1", port, app, threaded=True, request_handler=_QuietHandler
    ).serve_forever()


# --- one scenario -----------------------------------------------------------------------


def run_scenario(
    name: str,
    upload_src: Path,
    render_src: Path,
    endpoint: str,
    photos: list[Path],
    rounds: int,
) -> dict[str, Any]:
    import boto3
    from botocore.config import Config

    from imgpipe.domain.signing import sign_render_url
    from s3server import AWS_TEST_ENV, aws_test_environ

    bucket = f"bench-{name}-{int(time.time())}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=AWS_TEST_ENV["AWS_DEFAULT_REGION"],
        config=Config(s3={"addressing_style": "path"}),
    ).create_bucket(Bucket=bucket)
    with tempfile.TemporaryDirectory(prefix=f"imgpipe-s3-render-{name}-") as tmp:
        work = Path(tmp)
        env = aws_test_environ(
            imgpipe_env(
                work,
                signing_key=SIGNING_KEY,
                storage_url=f"s3://{bucket}/run",
                s3_endpoint_url=endpoint,
            )
        )
        image_ids: list[str] = []
        with running(work, {**env, "PYTHONPATH": str(upload_src)}) as stack:
            stack.run("serve", "--port", str(stack.port), log_name="serve-upload")
            stack.wait_healthy(timeout=120)
            with httpx.Client(base_url=stack.base_url, timeout=300) as http:
                for photo in photos:
                    answer = http.post(
                        "/v1/images", files={"file": (photo.name, photo.read_bytes())}
                    )
                    answer.raise_for_status()
                    image_ids.append(answer.json()["id"])
                started = time.monotonic()
                wait_all_done(http, image_ids, timeout=1800)
                print(f"{name}: processed in {time.monotonic() - started:.0f} s", file=sys.stderr)

        with running(work, {**env, "PYTHONPATH": str(render_src)}) as stack:
            stack.run("serve", "--port", str(stack.port), log_name="serve-render")
            stack.wait_healthy(timeout=120)
            httpx.post(endpoint + RESET).raise_for_status()
            cpu_before = stack.cpu_seconds()
            latencies: list[float] = []
            by_round: list[list[float]] = []
            failures = 0
            q = 40
            with httpx.Client(base_url=stack.base_url, timeout=300) as http:
                for _ in range(rounds):
                    this_round: list[float] = []
                    for image_id in image_ids:
                        q += 1
                        path = sign_render_url(
                            f"/v1/render/{image_id}?w=800&h=600&format=webp&q={q}",
                            SIGNING_KEY.encode(),
                        )
                        started = time.perf_counter()
                        answer = http.get(path)
                        elapsed = (time.perf_counter() - started) * 1000
                        if (
                            answer.status_code != 200
                            or answer.headers.get("x-render-cache") != "miss"
                        ):
                            failures += 1
                            print(
                                f"{name}: {answer.status_code} {answer.text[:200]}", file=sys.stderr
                            )
                            continue
                        this_round.append(elapsed)
                    latencies += this_round
                    by_round.append(this_round)
            cpu = stack.cpu_seconds() - cpu_before
            counts = httpx.get(endpoint + COUNTS).json()
    renders = len(latencies)
    reads = {kind: counts.get(kind, {"gets": 0, "bytes": 0, "misses": 0}) for kind in KINDS}
    total_bytes = sum(entry["bytes"] for entry in reads.values())
    return {
        "scenario": name,
        "upload_src": str(upload_src),
        "render_src": str(render_src),
        "renders": renders,
        "failures": failures,
        "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
        "mean_ms": round(sum(latencies) / renders, 1) if renders else None,
        "round_p50_ms": [round(percentile(r, 50), 1) for r in by_round if r],
        "store_reads": reads,
        "store_bytes": total_bytes,
        "store_bytes_per_render": round(total_bytes / max(1, renders)),
        "server_cpu_s": round(cpu, 2),
        "server_cpu_ms_per_render": round(cpu * 1000 / max(1, renders), 1),
    }


def _print(result: dict[str, Any]) -> None:
    reads = result["store_reads"]
    mib = 1 << 20
    print(
        f"{result['scenario']:>9}: {result['renders']} cold renders, "
        f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, mean {result['mean_ms']} ms "
        f"(per round p50 {result['round_p50_ms']}); server CPU "
        f"{result['server_cpu_ms_per_render']} ms/render\n"
        f"           store reads: {result['store_bytes'] / mib:.1f} MiB "
        f"({result['store_bytes_per_render'] / 1024:.0f} KiB/render); "
        + ", ".join(
            f"{kind} {reads[kind]['gets']} GETs {reads[kind]['bytes'] / mib:.1f} MiB"
            + (f" ({reads[kind]['misses']} 404)" if reads[kind]["misses"] else "")
            for kind in KINDS
            if reads[kind]["gets"] or reads[kind]["misses"]
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--before-src", type=Path, help="the src/ of an older checkout (before, upgraded)"
    )
    parser.add_argument("--after-src", type=Path, default=HERE.parent / "src")
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--scenarios", help="default: before,after,upgraded with --before-src, else after"
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--moto", type=int, help=argparse.SUPPRESS)  # the S3 server's process
    args = parser.parse_args()
    if args.moto:
        serve_moto(args.moto)
        return 0
    if args.scenarios is None:
        args.scenarios = "before,after,upgraded" if args.before_src else "after"
    if args.before_src is None and {"before", "upgraded"} & set(args.scenarios.split(",")):
        parser.error("the before and upgraded scenarios need --before-src")
    sys.path.insert(0, str(args.after_src.resolve()))
    photos = sorted(args.photos.glob("*.jpg"))
    if not photos:
        raise SystemExit(f"no photos in {args.photos}")
    before = args.before_src or args.after_src  # unused unless given (checked above)
    sources = {
        "before": (before, before),
        "after": (args.after_src, args.after_src),
        "upgraded": (before, args.after_src),
    }
    port = free_port()
    moto = subprocess.Popen(
        [sys.executable, __file__, "--moto", str(port)],
        env={**aws_environ(), "PYTHONPATH": str(HERE.parent / "tests")},
        stdin=subprocess.DEVNULL,
    )
    results = []
    try:
        endpoint = f"http://127.0.0.1:{port}"
        wait_http(endpoint + COUNTS)
        for name in args.scenarios.split(","):
            upload_src, render_src = sources[name]
            result = run_scenario(
                name, upload_src.resolve(), render_src.resolve(), endpoint, photos, args.rounds
            )
            results.append(result)
            _print(result)
    finally:
        moto.terminate()
        moto.wait(10)
    print(f"photos: {len(photos)} from {args.photos}; rounds: {args.rounds}")
    for result in results:
        _print(result)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 1 if any(r["failures"] for r in results) else 0


def aws_environ() -> dict[str, str]:
    import os

    from s3server import aws_test_environ

    return aws_test_environ(os.environ)


if __name__ == "__main__":
    sys.exit(main())
