"""Recovery after a SIGKILL, with 100, 1,000 and 10,000 jobs queued behind it.

    python bench/recovery_bench.py [--backlogs 100,1000,10000] [--kills 3] [--json]

For each backlog size, on a PostgreSQL database and a Redis queue name of its own: one
`imgpipe api` takes one upload (a 1600x1200 JPEG, profile `thumbnail`); the bench then
copies its image and variant rows in SQL into BACKLOG + 40 x --kills pending jobs (so at
least BACKLOG are still queued at the last kill) sharing that stored
original (as BACKLOG uploads would leave them, in seconds rather than minutes) and hands
each to the broker's process queue. One `imgpipe worker --concurrency 2` then starts. Once
it is busy, a pool process is SIGKILLed while it holds a job (the open `job_attempts` row
names its pid), --kills times in a row, each after the last victim's job is done.

Per kill: kill -> the job claimed again, and kill -> the job done. Without the recovery
queue the job went to the back of the queue (26-34 s with 1,000 queued, and growing with
the backlog); with it, both figures stay near LEASE_S + RECONCILE_S + one job, whatever
the backlog. Also printed: how many jobs were still queued when each victim was done,
to show the backlog was really there.

Settings as the fault suite's: LEASE_S=3, RECONCILE_S=0.5; REQUEUE_AFTER_S is long so the
broker-loss check never duplicates the backlog. Needs Redis and PostgreSQL on 127.0.0.1
(IMGPIPE_BENCH_REDIS, IMGPIPE_BENCH_POSTGRES).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from stack import POSTGRES_ADMIN, imgpipe_env, postgres_database, running

REDIS_URL = os.environ.get("IMGPIPE_BENCH_REDIS", "redis://127.0.0.1:6379/0")
SETTINGS = {
    "lease_s": "3",
    "reconcile_s": "0.5",
    "requeue_after_s": "3600",
    "process_timeout_s": "30",
    "retry_base_s": "0.05",
    "retry_max_s": "1",
}
CONCURRENCY = 2
KILL_TIMEOUT_S = 600.0


def _photo() -> bytes:
    """A smooth 1600x1200 JPEG: a thumbnail of it is real work (decode, resize, encode)."""
    image = Image.linear_gradient("L").resize((1600, 1200)).convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _psql(database_url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"))


def _quoted(columns: list[str]) -> str:
    return ", ".join('"' + c + '"' for c in columns)


def _copy_jobs(database_url: str, template: str, count: int) -> list[str]:
    """``count`` pending copies of the template image's rows; returns their ids, in order."""
    with _psql(database_url) as conn:

        def columns(table: str) -> list[str]:
            rows = conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                "ORDER BY ordinal_position",
                (table,),
            ).fetchall()
            return [r[0] for r in rows]

        new_id = "left(%s, 30) || '-' || lpad(n::text, 6, '0')"
        image_cols = columns("images")
        select = [new_id % "id" if c == "id" else f'"{c}"' for c in image_cols]
        conn.execute(
            f"INSERT INTO images ({_quoted(image_cols)}) "
            f"SELECT {', '.join(select)} FROM images, generate_series(1, %s) n WHERE id = %s",
            (count, template),
        )
        variant_cols = [c for c in columns("variants") if c != "id"]
        select = [new_id % "image_id" if c == "image_id" else f'"{c}"' for c in variant_cols]
        conn.execute(
            f"INSERT INTO variants ({_quoted(variant_cols)}) "
            f"SELECT {', '.join(select)} FROM variants, generate_series(1, %s) n "
            "WHERE image_id = %s",
            (count, template),
        )
        conn.execute(
            "UPDATE images SET due_at = now(), enqueued_at = now() WHERE id LIKE %s",
            (template[:30] + "-%",),
        )
        conn.commit()
    return [f"{template[:30]}-{n:06d}" for n in range(1, count + 1)]


def _hand_out(queue: str, image_ids: list[str]) -> None:
    """What ``jobs.hand_out`` sends for a new job, straight to the broker."""
    from celery import Celery

    app = Celery("recovery-bench", broker=REDIS_URL, set_as_current=False)
    with app.producer_or_acquire() as producer:
        for image_id in image_ids:
            app.send_task(
                "imgpipe.process_image",
                args=[image_id],
                queue=f"{queue}.process",
                producer=producer,
            )


def _queued(queue: str) -> int:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        return int(sum(client.llen(name) for name in (f"{queue}.process", f"{queue}.recover")))
    finally:
        client.close()


def _purge(queue: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.delete(f"{queue}.process", f"{queue}.recover", f"{queue}.webhooks")
    finally:
        client.close()


def _open_attempt(conn: psycopg.Connection[Any], pids: list[int]) -> tuple[int, str] | None:
    """A pool process that holds a job now, and the job."""
    names = [f"{socket.gethostname()}-{pid}"[:200] for pid in pids]
    row = conn.execute(
        "SELECT worker, image_id FROM job_attempts WHERE finished_at IS NULL "
        "AND worker = ANY(%s) ORDER BY claimed_at DESC LIMIT 1",
        (names,),
    ).fetchone()
    if row is None:
        return None
    return int(row[0].rsplit("-", 1)[1]), row[1]


def _kill_one(conn: psycopg.Connection[Any], worker_pid: int, queue: str) -> dict[str, float]:
    deadline = time.monotonic() + 60
    while True:
        conn.commit()
        pids = [c.pid for c in psutil.Process(worker_pid).children()]
        held = _open_attempt(conn, pids)
        if held is not None:
            break
        if time.monotonic() > deadline:
            raise SystemExit("no pool process took a job within 60 s")
        time.sleep(0.02)
    pid, image_id = held
    os.kill(pid, signal.SIGKILL)
    killed_at = time.time()
    queued_at_kill = _queued(queue)
    reclaimed_s: float | None = None
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while time.monotonic() < deadline:
        conn.commit()
        claims = conn.execute(
            "SELECT count(*), max(EXTRACT(EPOCH FROM claimed_at)) FROM job_attempts "
            "WHERE image_id = %s",
            (image_id,),
        ).fetchone()
        if reclaimed_s is None and claims is not None and claims[0] >= 2:
            reclaimed_s = float(claims[1]) - killed_at
        done = conn.execute(
            "SELECT status, EXTRACT(EPOCH FROM completed_at) FROM images WHERE id = %s",
            (image_id,),
        ).fetchone()
        if done is not None and done[0] == "done":
            return {
                "queued_at_kill": queued_at_kill,
                "reclaimed_s": reclaimed_s if reclaimed_s is not None else float("nan"),
                "done_s": float(done[1]) - killed_at,
                "queued_when_done": _queued(queue),
            }
        if done is not None and done[0] in ("failed", "partial"):
            raise SystemExit(f"{image_id} ended {done[0]}")
        time.sleep(0.05)
    raise SystemExit(f"{image_id} not done {KILL_TIMEOUT_S:.0f} s after the kill")


def run_backlog(backlog: int, kills: int, photo: bytes) -> list[dict[str, float]]:
    queue = f"imgpipe-recovery-bench-{uuid.uuid4().hex[:8]}"
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="imgpipe-recovery-") as tmp,
        postgres_database(POSTGRES_ADMIN) as database_url,
    ):
        env = imgpipe_env(
            Path(tmp),
            database_url=database_url,
            broker_url=REDIS_URL,
            queue_name=queue,
            **SETTINGS,
        )
        try:
            with running(Path(tmp), env) as stack:
                stack.migrate()
                stack.run("api", "--port", str(stack.port), log_name="api")
                stack.wait_healthy()
                with httpx.Client(base_url=stack.base_url, timeout=60) as client:
                    answer = client.post(
                        "/v1/images",
                        files={"file": ("photo.jpg", photo, "image/jpeg")},
                        data={"profiles": "thumbnail"},
                    )
                    answer.raise_for_status()
                    template = answer.json()["id"]
                _purge(queue)  # the template's own message: its copies are the backlog
                image_ids = _copy_jobs(database_url, template, backlog + kills * 40)
                _hand_out(queue, image_ids)
                worker_pid = stack.run(
                    "worker", "--concurrency", str(CONCURRENCY), log_name="worker"
                )
                with _psql(database_url) as conn:
                    for _ in range(kills):
                        results.append(_kill_one(conn, worker_pid, queue))
        finally:
            _purge(queue)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlogs", default="100,1000,10000")
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    photo = _photo()
    figures: dict[str, Any] = {}
    for backlog in [int(b) for b in args.backlogs.split(",")]:
        runs = run_backlog(backlog, args.kills, photo)
        figures[str(backlog)] = runs
        if not args.json:
            reclaimed = [r["reclaimed_s"] for r in runs]
            done = [r["done_s"] for r in runs]
            print(
                f"backlog {backlog:>6}: kill -> claimed again "
                f"{', '.join(f'{s:.1f}' for s in reclaimed)} s "
                f"(median {statistics.median(reclaimed):.1f}); kill -> done "
                f"{', '.join(f'{s:.1f}' for s in done)} s "
                f"(median {statistics.median(done):.1f}); queued at the kills "
                f"{', '.join(str(int(r['queued_at_kill'])) for r in runs)}, when done "
                f"{', '.join(str(int(r['queued_when_done'])) for r in runs)}",
                flush=True,
            )
    if args.json:
        print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
