"""Upload latency through `imgpipe serve`: p50/p95/p99 of POST /v1/images for 5 MB JPEGs.

Starts its own `imgpipe serve` on a free loopback port in a temporary data dir, uploads
distinct 5 MB JPEGs (distinct so deduplication cannot skip the storage write) while the
in-process workers turn the earlier ones into variants, and stops the server at the end.

Baseline, measured in the same run: writing and fsyncing the same 5 MB to the same disk,
the floor under any durable upload. The target (issue #2) is p99 < 100 ms.

    python bench/upload_bench.py [--uploads 100] [--interval 0.2] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from measure import fsync_floor_ms, percentile
from stack import imgpipe_env, running, unique_jpeg

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uploads", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between uploads")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    jpeg = make_jpeg()
    latencies: list[float] = []
    errors = 0
    with tempfile.TemporaryDirectory(prefix="imgpipe-upload-bench-") as tmp:
        data_dir = Path(tmp)
        floor = fsync_floor_ms(jpeg, data_dir, repeat=20)
        with running(data_dir / "serve", imgpipe_env(data_dir / "serve")) as stack:
            stack.run("serve", "--port", str(stack.port), log_name="serve")
            stack.wait_healthy()
            with httpx.Client(base_url=stack.base_url, timeout=30) as client:
                # Warm-up: the first request pays for lazy imports and connection setup.
                client.post("/v1/images", files={"file": ("w.jpg", unique_jpeg(jpeg, -1))})
                for n in range(args.uploads):
                    body = unique_jpeg(jpeg, n)
                    started = time.perf_counter()
                    response = client.post("/v1/images", files={"file": ("p.jpg", body)})
                    latencies.append((time.perf_counter() - started) * 1000)
                    errors += response.status_code != 202
                    time.sleep(max(0.0, args.interval - latencies[-1] / 1000))

    p99 = percentile(latencies, 99)
    result = {
        "uploads": len(latencies),
        "bytes": len(jpeg),
        "errors": errors,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": p99,
        "fsync_floor_ms": floor,
        "p99_over_floor": p99 / floor if floor else None,
        "verdict": "PASS" if p99 < TARGET_P99_MS and not errors else "MISS",
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{len(latencies)} uploads of {len(jpeg) / 1e6:.1f} MB, {errors} errors")
    print(f"p50 {result['p50_ms']:.1f} ms  p95 {result['p95_ms']:.1f} ms  p99 {p99:.1f} ms")
    print(f"baseline: write+fsync 5 MB {floor:.1f} ms; p99/baseline {p99 / floor:.1f}x")
    print(f"target p99 < {TARGET_P99_MS:.0f} ms: {result['verdict']}")


if __name__ == "__main__":
    main()
