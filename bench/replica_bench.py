"""Upload latency with and without a replica store, in the same run (issue #14).

Starts two `imgpipe serve` processes side by side, one with STORAGE_REPLICA_URL and one
without, and alternates distinct JPEG uploads between them, so both see the same machine
load at the same moments. With ``--store s3`` all stores are buckets on one moto S3 server
on loopback, in a process of its own; with ``--store file`` (default) they are directories on
the local disk. The replica write runs beside the primary's (services/durability.py), so
the target is upload p99 with a replica within 1.5x of without.

    python bench/replica_bench.py [--store file|s3] [--uploads 60] [--mb 2] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from measure import percentile  # noqa: E402
from stack import free_port, imgpipe_env, running, unique_jpeg  # noqa: E402
from upload_bench import make_jpeg  # noqa: E402

TARGET_RATIO = 1.5


@contextlib.contextmanager
def _stores(kind: str, root: Path) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """(settings without a replica, settings with one)."""
    if kind == "file":
        plain = {"storage_url": f"file://{root / 'plain-objects'}"}
        replicated = {
            "storage_url": f"file://{root / 'primary-objects'}",
            "storage_replica_url": f"file://{root / 'replica-objects'}",
        }
        yield plain, replicated
        return
    import boto3

    from s3server import AWS_TEST_ENV, running_s3_server

    with running_s3_server() as endpoint:
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )
        for bucket in ("bench-plain", "bench-primary", "bench-replica"):
            s3.create_bucket(Bucket=bucket)
        common = {"s3_endpoint_url": endpoint}
        yield (
            {**common, "storage_url": "s3://bench-plain/p"},
            {
                **common,
                "storage_url": "s3://bench-primary/p",
                "storage_replica_url": "s3://bench-replica/p",
            },
        )


@contextlib.contextmanager
def _moto_process() -> Iterator[str]:
    """moto's S3 server in a process of its own: in this one, its work would share the
    benchmark's GIL and the replica's extra PUTs would slow the server, not imgpipe."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                httpx.get(endpoint, timeout=1)
                break
            time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=("file", "s3"), default="file")
    parser.add_argument("--uploads", type=int, default=60, help="per configuration")
    parser.add_argument("--mb", type=float, default=2.0, help="size of each JPEG")
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    jpeg = make_jpeg(int(args.mb * 1024 * 1024))
    latencies: dict[str, list[float]] = {"without": [], "with": []}
    errors = {"without": 0, "with": 0}
    with (
        tempfile.TemporaryDirectory(prefix="imgpipe-replica-bench-") as tmp,
        _stores(args.store, Path(tmp)) as (plain, replicated),
    ):
        root = Path(tmp)
        env = {}
        if args.store == "s3":
            from s3server import AWS_TEST_ENV

            env = AWS_TEST_ENV
        with (
            running(root / "without", {**imgpipe_env(root / "without", **plain), **env}) as a,
            running(root / "with", {**imgpipe_env(root / "with", **replicated), **env}) as b,
        ):
            stacks = {"without": a, "with": b}
            for name, stack in stacks.items():
                stack.run("serve", "--port", str(stack.port), log_name=name)
            for stack in stacks.values():
                stack.wait_healthy(60)
            clients = {
                name: httpx.Client(base_url=stack.base_url, timeout=60)
                for name, stack in stacks.items()
            }
            for client in clients.values():  # warm-up: lazy imports, connections
                client.post("/v1/images", files={"file": ("w.jpg", unique_jpeg(jpeg, -1))})
            n = 0
            for _ in range(args.uploads):
                for name in ("without", "with"):
                    body = unique_jpeg(jpeg, n)
                    n += 1
                    started = time.perf_counter()
                    response = clients[name].post("/v1/images", files={"file": ("p.jpg", body)})
                    latencies[name].append((time.perf_counter() - started) * 1000)
                    errors[name] += response.status_code != 202
                    time.sleep(args.interval)
            for client in clients.values():
                client.close()

    result: dict[str, object] = {"store": args.store, "bytes": len(jpeg)}
    for name, values in latencies.items():
        result[name] = {
            "uploads": len(values),
            "errors": errors[name],
            "p50_ms": round(percentile(values, 50), 1),
            "p95_ms": round(percentile(values, 95), 1),
            "p99_ms": round(percentile(values, 99), 1),
        }
    ratio = percentile(latencies["with"], 99) / percentile(latencies["without"], 99)
    result["p99_ratio"] = round(ratio, 2)
    ok = ratio <= TARGET_RATIO and not any(errors.values())
    result["verdict"] = "PASS" if ok else "MISS"
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for name in ("without", "with"):
        r = result[name]
        assert isinstance(r, dict)
        print(
            f"{name:>7} replica: {r['uploads']} uploads, {r['errors']} errors, "
            f"p50 {r['p50_ms']} ms  p95 {r['p95_ms']} ms  p99 {r['p99_ms']} ms"
        )
    print(f"p99 with / without: {ratio:.2f}x (target <= {TARGET_RATIO}x): {result['verdict']}")


if __name__ == "__main__":
    main()
