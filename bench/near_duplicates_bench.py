"""Near-duplicates: precision and recall of the pHash at each Hamming distance.

For every photo of the corpus the script makes copies a user would call "the same
picture": resized, re-encoded, lightly cropped, brightened. Every image goes through
imgpipe's own engine (probe, decode, analyze: the pHash the API stores). Positives are
(photo, one of its copies); negatives are (photo, another photo or one of its copies).
At each distance d: recall = positives within d / positives; precision = positives within
d / all pairs within d. A harder copy (8 % cut off two sides) is reported on its own
("stress"), outside the target set. The default distance (domain/similarity.py) must keep
precision >= 0.95 and recall >= 0.9.

    .venv/bin/python bench/near_duplicates_bench.py [--photos DIR] [--json]
    .venv/bin/python bench/near_duplicates_bench.py --index N [--database-url URL]

``--index N`` times the lookup itself: N random pHashes for one owner in a migrated
database (SQLite file by default, or ``--database-url postgresql+psycopg://...``), then
the p50/p95 of GET /v1/images/{id}/similar's query at the default distance.

Exit 0 when everything ran (a missed target prints MISS), 1 when something failed,
2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyvips

from imgpipe import engine
from imgpipe.domain import similarity
from imgpipe.domain.media import Limits
from imgpipe.domain.profiles import BUILTIN_PROFILES
from imgpipe.engine.deadline import Deadline
from imgpipe.engine.pipeline import render_variants
from imgpipe.engine.probe import probe

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PHOTOS = ROOT.parent / "shared" / "corpus" / "photos"
LIMITS = Limits(max_upload_bytes=1 << 30, max_pixels=1 << 30, max_frames=500)
TARGET_PRECISION, TARGET_RECALL = 0.95, 0.9


def _crop(image: Any, left: float, top: float, right: float, bottom: float) -> Any:
    x, y = round(image.width * left), round(image.height * top)
    w = image.width - x - round(image.width * right)
    h = image.height - y - round(image.height * bottom)
    return image.crop(x, y, w, h)


# name -> (transform of the upright pixels, save options). These make the target set.
COPIES: dict[str, tuple[Callable[[Any], Any], dict[str, Any]]] = {
    "resize-50%": (lambda im: im.resize(0.5), {"suffix": ".jpg", "Q": 90}),
    "resize-800-webp": (lambda im: im.thumbnail_image(800), {"suffix": ".webp", "Q": 75}),
    "reencode-q40": (lambda im: im, {"suffix": ".jpg", "Q": 40}),
    "crop-5%-each-side": (lambda im: _crop(im, 0.05, 0.05, 0.05, 0.05), {"suffix": ".jpg"}),
    "brighten-20%": (lambda im: (im * 1.2 + 10).cast("uchar"), {"suffix": ".jpg"}),
}
# Harder than "lightly cropped": measured and reported, outside the target.
STRESS: dict[str, tuple[Callable[[Any], Any], dict[str, Any]]] = {
    "crop-8%-left-and-top": (lambda im: _crop(im, 0.08, 0.08, 0, 0), {"suffix": ".jpg"}),
}


def phash_of(path: Path) -> str:
    """The pHash exactly as the worker stores it."""
    spec = BUILTIN_PROFILES[0].variants()[0]
    analysis = render_variants(path, probe(path, LIMITS), [spec], Deadline(60)).analysis
    return str(analysis["phash"])


def make_copies(photo: Path, out: Path) -> dict[str, Path]:
    upright = pyvips.Image.new_from_file(str(photo)).autorot()
    upright = upright.extract_band(0, n=3) if upright.bands > 3 else upright
    made = {}
    for name, (transform, options) in (COPIES | STRESS).items():
        options = dict(options)
        target = out / f"{photo.stem}.{name}{options.pop('suffix')}"
        transform(upright).write_to_file(str(target), **options)
        made[name] = target
    return made


def measure(photos: list[Path]) -> dict[str, Any]:
    hashes: dict[tuple[str, str], int] = {}
    with tempfile.TemporaryDirectory(prefix="imgpipe-neardup-") as tmp:
        for photo in photos:
            hashes[(photo.name, "original")] = int(phash_of(photo), 16)
            for name, path in make_copies(photo, Path(tmp)).items():
                hashes[(photo.name, name)] = int(phash_of(path), 16)
            print(f"  hashed {photo.name}", file=sys.stderr)
    positives: list[tuple[str, int]] = []
    stress: list[tuple[str, int]] = []
    negatives: list[int] = []
    for photo in photos:
        mine = hashes[(photo.name, "original")]
        for (owner, name), value in hashes.items():
            if owner == photo.name and name in COPIES:
                positives.append((name, similarity.hamming(mine, value)))
            elif owner == photo.name and name in STRESS:
                stress.append((name, similarity.hamming(mine, value)))
            elif owner != photo.name:
                negatives.append(similarity.hamming(mine, value))
    rows = []
    for d in range(0, 21):
        tp = sum(1 for _, dist in positives if dist <= d)
        fp = sum(1 for dist in negatives if dist <= d)
        rows.append(
            {
                "distance": d,
                "recall": tp / len(positives),
                "precision": tp / (tp + fp) if tp + fp else 1.0,
                "false_positives": fp,
                "stress_recall": sum(1 for _, dist in stress if dist <= d) / len(stress),
            }
        )
    by_copy = {
        name: sorted(dist for n, dist in positives + stress if n == name)
        for name in COPIES | STRESS
    }
    return {
        "photos": len(photos),
        "positives": len(positives),
        "negatives": len(negatives),
        "closest_negative": min(negatives),
        "by_distance": rows,
        "distances_by_copy": by_copy,
    }


def time_index(
    count: int, database_url: str | None, distances: list[int], lookups: int = 200
) -> dict[str, Any]:
    from sqlalchemy import delete, insert

    from imgpipe.db import repo
    from imgpipe.db.migrate import upgrade
    from imgpipe.db.schema import ImageRow, utcnow
    from imgpipe.db.session import make_engine, make_read_sessionmaker

    tmp = tempfile.TemporaryDirectory(prefix="imgpipe-neardup-index-")
    url = database_url or f"sqlite:///{Path(tmp.name) / 'index.db'}"
    db = make_engine(url)
    upgrade(db)
    rng = random.Random(13)
    values = [rng.getrandbits(64) for _ in range(count)]
    started = time.perf_counter()
    now = utcnow()
    with db.begin() as conn:
        for start in range(0, count, 5000):
            batch = []
            for i, value in enumerate(values[start : start + 5000], start):
                parts = similarity.bands(value)
                batch.append(
                    {
                        "id": f"img_bench{i:012d}",
                        "owner": "bench",
                        "sha256": f"{i:064x}",
                        "bytes": 1,
                        "format": "jpeg",
                        "width": 1,
                        "height": 1,
                        "status": "done",
                        "metadata": {},
                        "created_at": now,
                        "updated_at": now,
                        "phash": f"{value:016x}",
                        "phash_b0": parts[0],
                        "phash_b1": parts[1],
                        "phash_b2": parts[2],
                        "phash_b3": parts[3],
                    }
                )
            conn.execute(insert(ImageRow), batch)
    load_s = round(time.perf_counter() - started, 1)
    sessions = make_read_sessionmaker(db)
    result: dict[str, Any] = {"backend": db.dialect.name, "images": count, "load_s": load_s}
    queries = rng.sample(values, min(lookups, count))
    for d in distances:
        latencies, candidates = [], []
        for value in queries:
            probes = [similarity.band_probes(b, d) for b in similarity.bands(value)]
            t0 = time.perf_counter()
            with sessions() as session:
                found = repo.phash_candidates(session, "bench", probes)
            hits = [h for _, h in found if similarity.hamming(value, int(h, 16)) <= d]
            latencies.append((time.perf_counter() - t0) * 1000)
            candidates.append(len(found))
            assert hits, "the image itself must be found"
        latencies.sort()
        result[f"distance_{d}"] = {
            "lookup_ms_p50": round(statistics.median(latencies), 2),
            "lookup_ms_p95": round(latencies[int(0.95 * (len(latencies) - 1))], 2),
            "candidates_mean": round(statistics.mean(candidates), 1),
        }
    if database_url:  # a shared server: leave it as it was
        with db.begin() as conn:
            conn.execute(delete(ImageRow).where(ImageRow.owner == "bench"))
    db.dispose()
    tmp.cleanup()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--index", type=int, default=0, help="time lookups among N images")
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--distances", default=None, help="with --index: comma-separated (default: the default)"
    )
    args = parser.parse_args()
    engine.configure()
    if args.index:
        distances = [int(d) for d in (args.distances or "").split(",") if d.strip()]
        result = time_index(
            args.index, args.database_url, distances or [similarity.DEFAULT_MAX_DISTANCE]
        )
        print(json.dumps(result, indent=2))
        return 0
    photos = sorted(p for p in args.photos.iterdir() if p.is_file() and not p.name.startswith("."))
    if len(photos) < 2:
        print(f"need at least two photos in {args.photos}", file=sys.stderr)
        return 2
    result = measure(photos)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{result['photos']} photos, {result['positives']} positive pairs, "
            f"{result['negatives']} negative pairs; closest negative at "
            f"{result['closest_negative']} bits"
        )
        print("copy                  distances to its original")
        for name, dists in result["distances_by_copy"].items():
            print(f"  {name:20s} {dists}")
        print(" d  recall  precision  false+  recall(stress)")
        for row in result["by_distance"]:
            print(
                f"{row['distance']:2d}  {row['recall']:6.3f}  {row['precision']:9.3f}  "
                f"{row['false_positives']:6d}  {row['stress_recall']:14.3f}"
            )
    chosen = result["by_distance"][similarity.DEFAULT_MAX_DISTANCE]
    ok = chosen["precision"] >= TARGET_PRECISION and chosen["recall"] >= TARGET_RECALL
    verdict = "ok" if ok else "MISS"
    print(
        f"default distance {similarity.DEFAULT_MAX_DISTANCE}: precision "
        f"{chosen['precision']:.3f} (target {TARGET_PRECISION}), recall {chosen['recall']:.3f} "
        f"(target {TARGET_RECALL}): {verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
