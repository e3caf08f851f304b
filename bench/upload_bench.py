"""Upload latency through `imgpipe serve`: p50/p95/p99 of POST /v1/images for 5 MB JPEGs.

Starts its own `imgpipe serve` on a free loopback port in a temporary data dir, uploads
distinct 5 MB JPEGs (distinct so deduplication cannot skip the storage write) while the
in-process workers turn the earlier ones into variants, and stops the server at the end.

Baseline, measured in the same run: writing and fsyncing the same 5 MB to the same disk,
the floor under any durable upload. The target (SPEC issue #2) is p99 < 100 ms.

    python bench/upload_bench.py [--uploads 100] [--interval 0.2] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

TARGET_P99_MS = 100.0


def make_jpeg(size_bytes: int = 5 * 1024 * 1024) -> bytes:
    """A noisy photo-like JPEG of about ``size_bytes`` (noise does not compress)."""
    side = 1600
    while True:
        noise = Image.effect_noise((side, side * 3 // 4), 60).convert("RGB")
        buffer = io.BytesIO()
        noise.save(buffer, format="JPEG", quality=95)
        if buffer.tell() >= size_bytes:
            return buffer.getvalue()
        side = int(side * 1.2)


def unique_copy(jpeg: bytes, n: int) -> bytes:
    """The same JPEG with a COM segment carrying ``n``: new sha256, no pixel change."""
    comment = f"imgpipe-bench-{n}".encode()
    segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
    return jpeg[:2] + segment + jpeg[2:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGPIPE_")}
    env["IMGPIPE_DATA_DIR"] = str(data_dir)
    env["IMGPIPE_DATABASE_URL"] = f"sqlite:///{data_dir / 'imgpipe.db'}"
    env["IMGPIPE_STORAGE_URL"] = f"file://{data_dir / 'objects'}"
    log = (data_dir / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "imgpipe", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=data_dir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    stop_server(process)
    raise SystemExit(f"server did not start; see {data_dir / 'server.log'}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def fsync_floor_ms(data: bytes, directory: Path, repeat: int = 20) -> float:
    times = []
    for i in range(repeat):
        path = directory / f"floor-{i}"
        started = time.perf_counter()
        with path.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        times.append((time.perf_counter() - started) * 1000)
        path.unlink()
    return statistics.median(times)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uploads", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between uploads")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    jpeg = make_jpeg()
    with tempfile.TemporaryDirectory(prefix="imgpipe-upload-bench-") as tmp:
        data_dir = Path(tmp)
        floor = fsync_floor_ms(jpeg, data_dir)
        port = free_port()
        server = start_server(data_dir, port)
        latencies: list[float] = []
        errors = 0
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                # Warm-up: first request pays for lazy imports and connection setup.
                client.post("/v1/images", files={"file": ("w.jpg", unique_copy(jpeg, -1))})
                for n in range(args.uploads):
                    body = unique_copy(jpeg, n)
                    started = time.perf_counter()
                    response = client.post("/v1/images", files={"file": ("p.jpg", body)})
                    latencies.append((time.perf_counter() - started) * 1000)
                    errors += response.status_code != 202
                    time.sleep(max(0.0, args.interval - latencies[-1] / 1000))
        finally:
            stop_server(server)

    result = {
        "uploads": len(latencies),
        "bytes": len(jpeg),
        "errors": errors,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "fsync_floor_ms": floor,
        "p99_over_floor": percentile(latencies, 99) / floor if floor else None,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{len(latencies)} uploads of {len(jpeg) / 1e6:.1f} MB, {errors} errors")
    print(
        f"p50 {result['p50_ms']:.1f} ms  p95 {result['p95_ms']:.1f} ms  "
        f"p99 {result['p99_ms']:.1f} ms"
    )
    print(
        f"baseline: write+fsync 5 MB {floor:.1f} ms; p99/baseline {result['p99_over_floor']:.1f}x"
    )
    verdict = "PASS" if result["p99_ms"] < TARGET_P99_MS else "MISS"
    print(f"target p99 < {TARGET_P99_MS:.0f} ms: {verdict}")


if __name__ == "__main__":
    main()
