"""Scale-out benchmarks on real engines: worker scaling, steady load, worker RSS.

    python bench/scaleout_bench.py scaling  [--copies 4]
    python bench/scaleout_bench.py steady   [--rate 5 --seconds 60]
    python bench/scaleout_bench.py rss      [--jobs 2000]

Each starts its own `imgpipe api` and `imgpipe worker` processes on 127.0.0.1 against the
local Redis (broker; a queue name of the run's own) and PostgreSQL (a database of the run's
own, dropped at the end), with local-disk storage in a temporary directory, and prints its
figures with the baseline measured in the same run.

- scaling: the same backlog of camera photos drained by 1 worker process, then by 2
  (Celery prefork, libvips one thread per process); target 2 >= 1.8x 1.
- steady: open-loop uploads of 3-6 MB photos at --rate per second for --seconds through
  `imgpipe api`, workers making the variants meanwhile; targets upload p99 < 150 ms,
  upload-to-all-variants-done p95 < 3 s, no error. Baselines: write+fsync of the same
  bytes, and the done-latency of one photo on an idle system.
- rss: --jobs jobs through one long-lived `imgpipe worker --concurrency 2`, resident
  memory of its pool sampled as it goes, with imgpipe's malloc arena cap and then with
  glibc's default (the baseline): how much each grows from the first 10% of jobs to the end.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import psutil
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from measure import fsync_floor_ms, percentile
from stack import Stack, imgpipe_env, running, unique_jpeg, wait_all_done

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "photos"
POSTGRES_ADMIN = os.environ.get("IMGPIPE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1/test")
REDIS = os.environ.get("IMGPIPE_BENCH_REDIS", "redis://127.0.0.1:6379/0")


@contextmanager
def postgres_url() -> Iterator[str]:
    import psycopg

    name = f"imgpipe_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        base = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def photos(min_bytes: int = 0) -> list[bytes]:
    """The corpus photos (at least min_bytes each), else generated 12 MP JPEGs."""
    if CORPUS.is_dir():
        found = [p.read_bytes() for p in sorted(CORPUS.glob("*.jpg"))]
        chosen = [data for data in found if len(data) >= min_bytes]
        if chosen:
            return chosen
    generated = []
    for seed in range(4):
        noise = Image.effect_noise((4000, 3000), 30 + seed).convert("RGB")
        buffer = io.BytesIO()
        noise.save(buffer, "JPEG", quality=92)
        generated.append(buffer.getvalue())
    return generated


@contextmanager
def scaleout(tmp: Path, **settings: str) -> Iterator[Stack]:
    with ExitStack() as stack_exit:
        database = stack_exit.enter_context(postgres_url())
        env = imgpipe_env(
            tmp,
            database_url=database,
            broker_url=REDIS,
            queue_name=f"imgpipe-bench-{uuid.uuid4().hex[:8]}",
            **settings,
        )
        stack = stack_exit.enter_context(running(tmp, env))
        stack.migrate()
        yield stack


def upload(client: httpx.Client, data: bytes, name: str) -> tuple[str, float]:
    started = time.perf_counter()
    response = client.post("/v1/images", files={"file": (name, data, "image/jpeg")})
    elapsed = time.perf_counter() - started
    if response.status_code != 202:
        raise RuntimeError(f"upload {name}: {response.status_code} {response.text[:200]}")
    return response.json()["id"], elapsed


# --- scaling -----------------------------------------------------------------------------


def drain_rate(tmp: Path, workers: int, backlog: list[bytes]) -> float:
    """Photos per second, from the first completion to the last (worker start-up excluded)."""
    with scaleout(tmp) as stack:
        stack.run("api", "--port", str(stack.port), log_name="api")
        stack.wait_healthy()
        with httpx.Client(base_url=stack.base_url, timeout=60) as client:
            ids = [upload(client, data, f"s{n}.jpg")[0] for n, data in enumerate(backlog)]
            for n in range(workers):  # one process each, libvips on one thread each
                stack.run(
                    "worker",
                    "--concurrency",
                    "1",
                    log_name=f"worker{n}",
                    extra_env={"VIPS_CONCURRENCY": "1"},
                )
            final = wait_all_done(client, ids, timeout=900)
    finished = sorted(datetime.fromisoformat(str(r["completed_at"])) for r in final.values())
    return (len(finished) - 1) / (finished[-1] - finished[0]).total_seconds()


def run_scaling(args: argparse.Namespace) -> dict[str, object]:
    base = photos()
    backlog = [unique_jpeg(data, n) for n in range(args.copies) for data in base]
    results = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory(prefix="imgpipe-scaling-") as tmp:
            results[workers] = drain_rate(Path(tmp), workers, backlog)
        print(f"{workers} worker process(es): {results[workers]:.2f} photos/s", file=sys.stderr)
    ratio = results[2] / results[1]
    return {
        "photos": len(backlog),
        "photos_per_s_1": results[1],
        "photos_per_s_2": results[2],
        "ratio": ratio,
        "target": ">= 1.8",
        "verdict": "PASS" if ratio >= 1.8 else "MISS",
    }


# --- steady ------------------------------------------------------------------------------


def _seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def run_steady(args: argparse.Namespace) -> dict[str, object]:
    base = photos(min_bytes=3_000_000)
    total = int(args.rate * args.seconds)
    with tempfile.TemporaryDirectory(prefix="imgpipe-steady-") as tmp_name:
        tmp = Path(tmp_name)
        floor = fsync_floor_ms(base[0], tmp)
        with scaleout(tmp / "stack") as stack:
            stack.run("api", "--port", str(stack.port), log_name="api")
            stack.run("worker", "--concurrency", "2", log_name="worker")
            stack.wait_healthy()
            client = httpx.Client(base_url=stack.base_url, timeout=60)
            # Baseline: one photo on the idle system, upload to done.
            image_id, idle_upload = upload(client, unique_jpeg(base[0], -1), "idle.jpg")
            idle = wait_all_done(client, [image_id], timeout=60)[image_id]
            idle_done = idle_upload + _seconds_between(
                str(idle["created_at"]), str(idle["completed_at"])
            )

            latencies: dict[str, float] = {}
            errors: list[str] = []
            lock = threading.Lock()

            def send(n: int) -> None:
                data = unique_jpeg(base[n % len(base)], n)
                try:
                    with httpx.Client(base_url=stack.base_url, timeout=60) as own:
                        image, elapsed = upload(own, data, f"p{n}.jpg")
                    with lock:
                        latencies[image] = elapsed
                except Exception as exc:  # counted, not fatal: "no error" is a target
                    with lock:
                        errors.append(str(exc))

            started = time.perf_counter()
            with ThreadPoolExecutor(32) as pool:
                for n in range(total):  # open loop: send on schedule whatever the latency
                    delay = started + n / args.rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    pool.submit(send, n)
            final = wait_all_done(client, list(latencies), timeout=600)
            client.close()

    upload_ms = [v * 1000 for v in latencies.values()]
    done_s = [
        latencies[i] + _seconds_between(str(r["created_at"]), str(r["completed_at"]))
        for i, r in final.items()
    ]
    failed = [i for i, r in final.items() if r["status"] != "done"]
    p99_upload = percentile(upload_ms, 99)
    p95_done = percentile(done_s, 95)
    ok = p99_upload < 150 and p95_done < 3 and not errors and not failed
    return {
        "uploads": len(latencies),
        "rate_per_s": args.rate,
        "mean_bytes": statistics.mean(len(b) for b in base),
        "upload_p50_ms": percentile(upload_ms, 50),
        "upload_p99_ms": p99_upload,
        "done_p50_s": percentile(done_s, 50),
        "done_p95_s": p95_done,
        "errors": len(errors) + len(failed),
        "baseline_fsync_ms": floor,
        "baseline_idle_done_s": idle_done,
        "upload_p99_over_fsync": p99_upload / floor,
        "done_p95_over_idle": p95_done / idle_done,
        "targets": "upload p99 < 150 ms, done p95 < 3 s, no error",
        "verdict": "PASS" if ok else "MISS",
    }


# --- rss ---------------------------------------------------------------------------------


def pool_rss_mb(parent_pid: int) -> float:
    try:
        parent = psutil.Process(parent_pid)
        procs = [parent, *parent.children(recursive=True)]
        return float(sum(p.memory_info().rss for p in procs)) / 1e6
    except psutil.NoSuchProcess:
        return 0.0


def rss_run(tmp: Path, jobs: list[bytes], arena_max: str | None) -> list[tuple[int, float]]:
    """[(jobs done, pool RSS MB)] sampled while one worker drains the backlog."""
    with scaleout(tmp) as stack:
        stack.run("api", "--port", str(stack.port), log_name="api")
        stack.wait_healthy()
        with httpx.Client(base_url=stack.base_url, timeout=60) as client:
            ids = [upload(client, data, f"r{n}.jpg")[0] for n, data in enumerate(jobs)]
            extra = {"MALLOC_ARENA_MAX": arena_max} if arena_max else {}
            pid = stack.run("worker", "--concurrency", "2", log_name="worker", extra_env=extra)
            samples: list[tuple[int, float]] = []
            while True:
                done = client.get("/metrics").text
                unfinished = next(
                    float(line.split()[-1])
                    for line in done.splitlines()
                    if line.startswith("imgpipe_images_unfinished ")
                )
                samples.append((len(ids) - int(unfinished), pool_rss_mb(pid)))
                if unfinished == 0:
                    break
                time.sleep(1)
    return samples


def _growth(samples: list[tuple[int, float]], jobs: int) -> dict[str, float]:
    early = [rss for done, rss in samples if jobs * 0.05 <= done <= jobs * 0.15] or [samples[0][1]]
    return {
        "rss_at_10pct_mb": statistics.median(early),
        "rss_peak_mb": max(rss for _, rss in samples),
        "rss_end_mb": samples[-2][1] if len(samples) > 1 else samples[-1][1],
    }


def run_rss(args: argparse.Namespace) -> dict[str, object]:
    # Photos of several sizes, so the allocator sees the mix a real worker sees.
    seeds = []
    for n, (w, h) in enumerate([(1600, 1200), (2400, 1600), (1200, 1800), (3000, 2000)]):
        buffer = io.BytesIO()
        Image.effect_noise((w, h), 25 + n).convert("RGB").save(buffer, "JPEG", quality=88)
        seeds.append(buffer.getvalue())
    jobs = [unique_jpeg(seeds[n % len(seeds)], n) for n in range(args.jobs)]
    results = {}
    for label, arena in (("imgpipe", None), ("glibc_default", str(8 * (os.cpu_count() or 1)))):
        with tempfile.TemporaryDirectory(prefix="imgpipe-rss-") as tmp:
            samples = rss_run(Path(tmp), jobs, arena)
        results[label] = _growth(samples, args.jobs)
        print(f"{label}: {results[label]}", file=sys.stderr)
    ours, base = results["imgpipe"], results["glibc_default"]
    growth = ours["rss_end_mb"] / ours["rss_at_10pct_mb"]
    return {
        "jobs": args.jobs,
        **{f"imgpipe_{k}": v for k, v in ours.items()},
        **{f"baseline_{k}": v for k, v in base.items()},
        "imgpipe_growth_ratio": growth,
        "baseline_growth_ratio": base["rss_end_mb"] / base["rss_at_10pct_mb"],
        "end_rss_vs_baseline": ours["rss_end_mb"] / base["rss_end_mb"],
        "target": "flat: end RSS within 10% of RSS after the first 10% of jobs",
        "verdict": "PASS" if growth <= 1.10 else "MISS",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="which", required=True)
    scaling = sub.add_parser("scaling")
    scaling.add_argument("--copies", type=int, default=4)
    steady = sub.add_parser("steady")
    steady.add_argument("--rate", type=float, default=5.0)
    steady.add_argument("--seconds", type=float, default=60.0)
    rss = sub.add_parser("rss")
    rss.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()
    runner = {"scaling": run_scaling, "steady": run_steady, "rss": run_rss}[args.which]
    print(json.dumps(runner(args), indent=2))


if __name__ == "__main__":
    main()
