"""Does moderation slow the variants down? Upload-to-variants-done with MODERATION off and
on, in the same run, below saturation; and the backend's CPU per image.

Two `imgpipe serve` processes on the embedded defaults, one with MODERATION=off and one
with MODERATION=nudenet (the `moderation` extra; `--backend rekognition` uses the test
stand-in on loopback instead). Uploads go at ``--rate`` per second to one server at a
time, in alternating blocks of ``--block`` uploads, each block drained before the next
(so neither server's backlog runs during the other's block), and both see the same
machine (other people's load included) in the same minutes. Latency is the POST's own time plus the
server's ``completed_at - created_at`` (every variant done), so polling adds nothing.

Then, in this process: the CPU time of the moderation copy (decode, engine) and of the
model, per image, over the same photos.

    python bench/moderation_bench.py [--uploads 40] [--rate 1] [--block 5] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from measure import percentile
from stack import busy_cores_seconds, imgpipe_env, running, unique_jpeg

CORPUS = Path("/work/shared/corpus/photos")
TARGET_RATIO = 1.10


def photos(count: int, corpus: bool) -> list[bytes]:
    """Generated 3 MP photo-like JPEGs, or (``--corpus``) the corpus photos where present
    (read, never copied: 5-24 MP, so a 2-core machine saturates below 1 upload/s)."""
    found = sorted(CORPUS.glob("*.jpg"))[:count] if corpus and CORPUS.is_dir() else []
    data = [p.read_bytes() for p in found if p.stat().st_size < 20_000_000]
    rng = np.random.default_rng(7)
    while len(data) < count:
        y, x = np.mgrid[0:1500, 0:2000]
        seed = len(data)
        base = np.stack(
            [120 + 80 * np.sin(x / (40 + seed)), 110 + 70 * np.cos(y / 55), 100 + 0 * x], -1
        )
        pixels = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, "JPEG", quality=90)
        data.append(out.getvalue())
    return data


def _when(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def upload_block(
    client: httpx.Client, jpegs: list[bytes], start: int, count: int, rate: float
) -> list[tuple[str, float]]:
    sent: list[tuple[str, float]] = []
    for n in range(start, start + count):
        due = time.monotonic() + 1.0 / rate
        data = unique_jpeg(jpegs[n % len(jpegs)], n)
        began = time.monotonic()
        response = client.post("/v1/images", files={"file": ("p.jpg", data, "image/jpeg")})
        response.raise_for_status()
        sent.append((response.json()["id"], time.monotonic() - began))
        time.sleep(max(0.0, due - time.monotonic()))
    return sent


def latencies(client: httpx.Client, sent: list[tuple[str, float]]) -> list[float]:
    out = []
    deadline = time.monotonic() + 300
    for image_id, post_s in sent:
        while True:
            resource = client.get(f"/v1/images/{image_id}").json()
            if resource["completed_at"]:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{image_id} unfinished")
            time.sleep(0.2)
        assert resource["status"] == "done", resource["status"]
        out.append(post_s + _when(resource["completed_at"]) - _when(resource["created_at"]))
    return out


def moderation_statuses(client: httpx.Client, ids: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    deadline = time.monotonic() + 120
    for image_id in ids:
        while True:
            status = client.get(f"/v1/images/{image_id}").json()["moderation"]["status"]
            if status not in ("pending",) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        counts[status] = counts.get(status, 0) + 1
    return counts


def backend_cpu_ms(jpegs: list[bytes], backend: str, endpoint: str | None) -> dict[str, float]:
    """CPU of the moderation copy and of the model, per image, in this process."""
    from imgpipe import engine
    from imgpipe.domain.media import Limits
    from imgpipe.engine.moderation_input import moderation_input

    engine.configure()
    if backend == "nudenet":
        from imgpipe.moderation.nudenet_backend import NudeNetModerator

        moderator: Any = NudeNetModerator()
    else:
        from imgpipe.moderation.rekognition import RekognitionModerator

        moderator = RekognitionModerator(endpoint, "us-east-1")
    limits = Limits(50_000_000, 300_000_000, 500)
    decode, model = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n, data in enumerate(jpegs):
            path = Path(tmp) / f"{n}.jpg"
            path.write_bytes(data)
            started = time.process_time()
            copy = moderation_input(path, limits, moderator.max_side)
            middle = time.process_time()
            moderator.classify(copy)
            decode.append((middle - started) * 1000)
            model.append((time.process_time() - middle) * 1000)
    model = model[1:] or model  # the first run loads the model
    return {
        "copy_ms_p50": percentile(decode, 50),
        "model_ms_p50": percentile(model, 50),
        "model_ms_p95": percentile(model, 95),
        "total_ms_p50": percentile(decode, 50) + percentile(model, 50),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=40, help="per server")
    parser.add_argument("--rate", type=float, default=1.0, help="uploads per second")
    parser.add_argument("--block", type=int, default=5)
    parser.add_argument("--backend", choices=("nudenet", "rekognition"), default="nudenet")
    parser.add_argument("--corpus", action="store_true", help="the corpus photos instead")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    jpegs = photos(10, args.corpus)
    endpoint = None
    standin: Any = None
    extra: dict[str, str] = {}
    if args.backend == "rekognition":
        import os

        from rekognition_server import running_rekognition
        from s3server import AWS_TEST_ENV

        standin = running_rekognition()
        endpoint = standin.__enter__().endpoint_url
        os.environ.update(AWS_TEST_ENV)
        extra = {"rekognition_endpoint_url": endpoint}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = {"off": {"moderation": "off"}, "on": {"moderation": args.backend, **extra}}
        with (
            running(root / "off", imgpipe_env(root / "off", **settings["off"])) as off,
            running(root / "on", imgpipe_env(root / "on", **settings["on"])) as on,
        ):
            for stack in (off, on):
                stack.run("serve", "--host", "127.0.0.1", "--port", str(stack.port), log_name="s")
            for stack in (off, on):
                stack.wait_healthy(60)
            clients = {
                "off": httpx.Client(base_url=off.base_url, timeout=60),
                "on": httpx.Client(base_url=on.base_url, timeout=60),
            }
            sent: dict[str, list[tuple[str, float]]] = {"off": [], "on": []}
            results: dict[str, list[float]] = {"off": [], "on": []}
            busy_before, wall_before = busy_cores_seconds(), time.monotonic()
            for start in range(0, args.uploads, args.block):
                count = min(args.block, args.uploads - start)
                # One server at a time, each block drained before the next: neither
                # server's backlog runs during the other's block.
                order = ("off", "on") if (start // args.block) % 2 == 0 else ("on", "off")
                for name in order:
                    block = upload_block(clients[name], jpegs, start, count, args.rate)
                    results[name] += latencies(clients[name], block)
                    sent[name] += block
            busy = (busy_cores_seconds() - busy_before) / (time.monotonic() - wall_before)
            verdicts = moderation_statuses(clients["on"], [i for i, _ in sent["on"]])
    cpu = backend_cpu_ms(jpegs, args.backend, endpoint)
    if standin is not None:
        standin.__exit__(None, None, None)
    summary: dict[str, Any] = {
        "backend": args.backend,
        "uploads_per_server": args.uploads,
        "rate_per_s": args.rate,
        "machine_busy_cores": round(busy, 2),
        "verdicts": verdicts,
        "backend_cpu_ms": {k: round(v, 1) for k, v in cpu.items()},
    }
    for name, values in results.items():
        summary[f"variants_done_s_{name}"] = {
            "p50": round(percentile(values, 50), 3),
            "p95": round(percentile(values, 95), 3),
        }
    for q in ("p50", "p95"):
        on_s, off_s = summary["variants_done_s_on"][q], summary["variants_done_s_off"][q]
        summary[f"ratio_{q}"] = round(on_s / off_s, 3)
    summary["within_target"] = all(summary[f"ratio_{q}"] <= TARGET_RATIO for q in ("p50", "p95"))
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        print(f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
