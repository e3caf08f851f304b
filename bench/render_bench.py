"""On-demand render benchmark: cache hits, cold renders beside thumbor, face crop, AVIF cost.

    .venv/bin/python bench/render_bench.py [--photos DIR] [--seconds 20] [--out FILE.json]
        [--thumbor /tmp/thumbor-venv/bin/thumbor] [--skip-thumbor]

What it does, in one run on one machine (loopback only):

1. starts `imgpipe serve` on a fresh data dir (single-user mode, 127.0.0.1), uploads the
   corpus photos (7-24 MP) and waits until their variants are done, so the background
   workers are idle while anything is measured;
2. cache hits: one signed render URL, already rendered, hammered by wrk (`-t2 -c16`,
   `--latency`) if wrk is installed, else by the Python closed-loop generator below;
   targets p99 < 10 ms and >= 1,000 requests/s;
3. cold renders: `w=800&h=600` (fit inside) WebP from the photos, 2 requests in flight,
   every request a cache miss (each URL has its own quality 50-99, so its own cache key);
   target p99 < 150 ms;
4. thumbor (pip, in its own virtualenv, never in our pyproject), file loader, no
   storage and no result storage, 2 processes, the same photos and the same job
   (`/unsafe/fit-in/800x600/filters:format(webp):quality(Q)/PHOTO`), 2 in flight, in
   slices alternating with imgpipe's (so load from elsewhere on the machine hits both
   alike): imgpipe should reach >= 1.5x its requests/s with a lower p99;
5. face crop: for the photos with faces, crop=face at several boxes; every face the
   detector finds must lie inside the crop window (reported per photo and box);
6. AVIF cost: 800x600 WebP against AVIF at the configured effort (encode.AVIF_EFFORT),
   in-process, time and bytes.

Results print as a table and, with --out, as JSON. Install thumbor with
`python3 -m venv /tmp/thumbor-venv && /tmp/thumbor-venv/bin/pip install thumbor`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PHOTOS = ROOT.parent / "shared" / "corpus" / "photos"
FACE_PHOTOS = (
    "faces-man-child_canon-ixus750.jpg",
    "face-selfie-indoor_sonyericsson-c905c.jpg",
    "woman-bar-menu-text_24mp.jpg",
)
FACE_BOXES = ((400, 400), (300, 500), (800, 300), (200, 200))
ROUNDS = 4  # cold-render slices, imgpipe and thumbor alternating


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout}s")


@contextlib.contextmanager
def running(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


# --- load generators ----------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class Tally:
    """Latencies, wall time and errors summed over one or more slices."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.wall = 0.0

    def summary(self) -> dict[str, Any]:
        return summarise(self.latencies, self.wall, self.errors)


def closed_loop(
    next_url: Callable[[], str | None],
    in_flight: int,
    seconds: float,
    headers: dict[str, str],
    tally: Tally | None = None,
) -> dict[str, Any]:
    """``in_flight`` clients, each sending its next request as soon as the last returns."""
    tally = tally if tally is not None else Tally()
    latencies, errors = tally.latencies, tally.errors
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(timeout=60, headers=headers) as http:
            while time.monotonic() < stop_at:
                with lock:
                    url = next_url()
                if url is None:
                    return
                started = time.perf_counter()
                response = http.get(url)
                elapsed = time.perf_counter() - started
                with lock:
                    if response.status_code == 200:
                        latencies.append(elapsed)
                    else:
                        errors.append(f"{response.status_code} {response.text[:120]}")

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(in_flight)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tally.wall += time.perf_counter() - started
    return tally.summary()


def summarise(latencies: list[float], wall: float, errors: list[str]) -> dict[str, Any]:
    if not latencies:
        return {"requests": 0, "errors": len(errors), "first_error": errors[:1]}
    ms = [x * 1000 for x in latencies]
    return {
        "requests": len(ms),
        "errors": len(errors),
        "first_error": errors[:1],
        "rps": round(len(ms) / wall, 1),
        "p50_ms": round(statistics.median(ms), 1),
        "p90_ms": round(percentile(ms, 90), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1),
    }


def wrk(url: str, seconds: float, threads: int = 2, connections: int = 16) -> dict[str, Any]:
    """wrk's own numbers (requests/s and its latency percentiles)."""
    done = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(seconds)}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    )
    text = done.stdout

    def ms(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return round(value / 1000 if unit == "us" else value * 1000 if unit == "s" else value, 2)

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    return {
        "tool": f"wrk -t{threads} -c{connections}",
        "rps": float(rps.group(1)) if rps else float("nan"),
        "p50_ms": ms("50"),
        "p90_ms": ms("90"),
        "p99_ms": ms("99"),
        "errors": int(non2xx.group(1)) if non2xx else 0,
    }


# --- imgpipe --------------------------------------------------------------------------------


def start_imgpipe(work: Path, port: int) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGPIPE_")}
    env.update(
        {
            "IMGPIPE_DATA_DIR": str(work / "data"),
            "IMGPIPE_DATABASE_URL": f"sqlite:///{work / 'imgpipe.db'}",
            "IMGPIPE_STORAGE_URL": f"file://{work / 'objects'}",
            "IMGPIPE_SIGNING_KEY": "bench-signing-key",
            "IMGPIPE_LOG_LEVEL": "WARNING",
            "IMGPIPE_RATE_LIMIT_REQUESTS": "1000000/second",
            "IMGPIPE_RATE_LIMIT_UPLOADS": "1000000/second",
        }
    )
    argv = [sys.executable, "-m", "imgpipe", "serve", "--port", str(port)]
    return argv, env


def upload_all(base: str, photos: list[Path]) -> dict[str, str]:
    ids: dict[str, str] = {}
    with httpx.Client(base_url=base, timeout=120) as http:
        for photo in photos:
            response = http.post("/v1/images", files={"file": (photo.name, photo.read_bytes())})
            response.raise_for_status()
            ids[photo.name] = response.json()["id"]
        deadline = time.monotonic() + 600
        for image_id in ids.values():
            while time.monotonic() < deadline:
                status = http.get(f"/v1/images/{image_id}").json()["status"]
                if status in ("done", "partial", "failed"):
                    break
                time.sleep(0.5)
    return ids


# --- thumbor --------------------------------------------------------------------------------

THUMBOR_CONF = """
LOADER = 'thumbor.loaders.file_loader'
FILE_LOADER_ROOT_PATH = {root!r}
STORAGE = 'thumbor.storages.no_storage'
RESULT_STORAGE = None
ALLOW_UNSAFE_URL = True
MAX_WIDTH = 0
MAX_HEIGHT = 0
AUTO_WEBP = False
"""


@contextlib.contextmanager
def thumbor_server(thumbor: str, photos: list[Path], work: Path) -> Iterator[str]:
    """thumbor 2 processes on loopback; yields its base URL."""
    conf = work / "thumbor.conf"
    conf.write_text(THUMBOR_CONF.format(root=str(photos[0].parent)))
    port = free_port()
    argv = [thumbor, "-p", str(port), "-i", "127.0.0.1", "-c", str(conf), "-l", "warning"]
    argv += ["--processes", "2"]
    with running(argv, dict(os.environ), work, work / "thumbor.log"):
        wait_http(f"http://127.0.0.1:{port}/healthcheck")
        yield f"http://127.0.0.1:{port}"


# --- in-process measurements ------------------------------------------------------------


def face_crops(photos_dir: Path) -> list[dict[str, Any]]:
    from urllib.parse import parse_qsl

    from imgpipe import engine
    from imgpipe.domain.media import ImageFormat, Limits
    from imgpipe.domain.render_options import parse_options
    from imgpipe.engine import faces
    from imgpipe.engine.probe import probe
    from imgpipe.engine.render import render

    engine.configure()
    limits = Limits(1 << 30, 1 << 30, 500)
    rows = []
    for name in FACE_PHOTOS:
        path = photos_dir / name
        if not path.exists():
            continue
        facts = probe(path, limits)
        for width, height in FACE_BOXES:
            query = f"w={width}&h={height}&fit=cover&crop=face"
            result = render(path, facts, parse_options(parse_qsl(query)), ImageFormat.WEBP)
            window = result.crop_window
            found = list(result.faces)
            inside = 0
            if window is not None:
                left, top, w, h = window
                inside = sum(
                    1
                    for x, y, fw, fh in found
                    if left <= x and top <= y and x + fw <= left + w and y + fh <= top + h
                )
            rows.append(
                {
                    "photo": name,
                    "box": f"{width}x{height}",
                    "faces": len(found),
                    "inside": inside,
                    "all_inside": inside == len(found),
                    "fallback": not found,
                    "opencv": faces.available(),
                }
            )
    return rows


def avif_cost(photos: list[Path]) -> dict[str, Any]:
    from urllib.parse import parse_qsl

    from imgpipe import engine
    from imgpipe.domain.media import ImageFormat, Limits
    from imgpipe.domain.render_options import parse_options
    from imgpipe.engine.encode import AVIF_EFFORT
    from imgpipe.engine.probe import probe
    from imgpipe.engine.render import render

    engine.configure()
    options = parse_options(parse_qsl("w=800&h=600"))
    limits = Limits(1 << 30, 1 << 30, 500)
    out: dict[str, Any] = {"avif_effort": AVIF_EFFORT}
    for fmt in (ImageFormat.WEBP, ImageFormat.AVIF):
        times, sizes = [], []
        for path in photos:
            facts = probe(path, limits)
            started = time.perf_counter()
            result = render(path, facts, options, fmt)
            times.append((time.perf_counter() - started) * 1000)
            sizes.append(len(result.data))
        out[fmt.value] = {
            "median_ms": round(statistics.median(times), 1),
            "max_ms": round(max(times), 1),
            "mean_kib": round(statistics.mean(sizes) / 1024, 1),
        }
    return out


# --- main -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--in-flight", type=int, default=2)
    parser.add_argument("--thumbor", default="/tmp/thumbor-venv/bin/thumbor")
    parser.add_argument("--skip-thumbor", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    photos = sorted(p for p in args.photos.glob("*.jpg"))
    if not photos:
        raise SystemExit(f"no photos in {args.photos}")
    sys.path.insert(0, str(ROOT / "src"))
    from imgpipe.domain.signing import sign_render_url

    key = b"bench-signing-key"
    results: dict[str, Any] = {"photos": len(photos), "cpus": os.cpu_count()}
    work = Path(tempfile.mkdtemp(prefix="render-bench-"))
    try:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        argv, env = start_imgpipe(work, port)
        with running(argv, env, work, work / "imgpipe.log"):
            wait_http(f"{base}/healthz")
            ids = upload_all(base, photos)

            hit_url = base + sign_render_url(
                f"/v1/render/{ids[photos[0].name]}.webp?w=800&h=600", key
            )
            assert httpx.get(hit_url, timeout=60).status_code == 200
            assert httpx.get(hit_url).headers["x-render-cache"] == "hit"
            if shutil.which("wrk"):
                results["cache_hit"] = wrk(hit_url, args.seconds)
            else:
                results["cache_hit"] = {
                    "tool": "python closed loop, 16 in flight",
                    **closed_loop(lambda: hit_url, 16, args.seconds, {}),
                }

            cold = iter(
                base
                + sign_render_url(
                    f"/v1/render/{ids[photo.name]}?w=800&h=600&format=webp&q={q}", key
                )
                for q in range(50, 100)
                for photo in photos
            )
            thumbor = None
            with contextlib.ExitStack() as stack:
                if not args.skip_thumbor and Path(args.thumbor).exists():
                    thumbor_base = stack.enter_context(thumbor_server(args.thumbor, photos, work))
                    thumbor = iter(
                        f"{thumbor_base}/unsafe/fit-in/800x600/filters:format(webp):quality({q})/"
                        f"{photo.name}"
                        for q in range(50, 100)
                        for photo in photos
                    )
                # Interleaved slices, so a busy moment of the machine hits both alike.
                ours, theirs = Tally(), Tally()
                for _ in range(ROUNDS):
                    slice_s = args.seconds / ROUNDS
                    closed_loop(lambda: next(cold, None), args.in_flight, slice_s, {}, ours)
                    if thumbor is not None:
                        closed_loop(
                            lambda: next(thumbor, None), args.in_flight, slice_s, {}, theirs
                        )
            results["cold_render_imgpipe"] = {
                "tool": f"python closed loop, {args.in_flight} in flight",
                **ours.summary(),
            }
            if thumbor is not None:
                results["cold_render_thumbor"] = {
                    "tool": f"python closed loop, {args.in_flight} in flight, 2 processes",
                    **theirs.summary(),
                }
                mine, other = ours.summary().get("rps", 0), theirs.summary().get("rps", 0)
                results["imgpipe_over_thumbor_rps"] = round(mine / other, 2) if other else None

        results["face_crop"] = face_crops(args.photos)
        results["avif_cost_800x600"] = avif_cost(photos[:4])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
