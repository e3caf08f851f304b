"""Output bytes of the built-in profiles for every file of the shared corpus, recorded and
compared: the corpus-wide half of the golden-hash check (tests/unit/test_golden_outputs.py
is the half CI runs, on generated fixtures).

    .venv/bin/python bench/golden_corpus.py --write /tmp/before.json    # before a change
    .venv/bin/python bench/golden_corpus.py --compare /tmp/before.json  # after it

``--compare`` lists every output whose bytes changed, with its SSIM against the old bytes
(decoded, luma, 8x8 blocks), and exits 1 when any changed. Hostile files are left out:
they test refusals, not output bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from benchlib.corpus import SHARED

CORPUS = SHARED / "corpus"
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".avif", ".heic", ".bmp"}


def corpus_files() -> list[Path]:
    return sorted(
        p
        for p in CORPUS.rglob("*")
        if p.is_file() and p.suffix.lower() in SUFFIXES and "hostile" not in p.parts
    )


def outputs(path: Path) -> dict[str, bytes]:
    # tests/ on the path, as pytest puts it: golden_engine is `unit.golden_engine` there.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from unit import golden_engine

    return golden_engine.builtin_outputs(path)


def luma(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("L"), dtype=np.float32)


def block_ssim(a: np.ndarray, b: np.ndarray, block: int = 8) -> float:
    if a.shape != b.shape:
        return float("nan")
    h, w = (a.shape[0] // block) * block, (a.shape[1] // block) * block
    if not h or not w:
        return 1.0 if np.array_equal(a, b) else 0.0

    def blocks(x: np.ndarray) -> np.ndarray:
        return x[:h, :w].reshape(h // block, block, w // block, block).swapaxes(1, 2)

    xa, xb = blocks(a), blocks(b)
    mu_a, mu_b = xa.mean(axis=(2, 3)), xb.mean(axis=(2, 3))
    var_a, var_b = xa.var(axis=(2, 3)), xb.var(axis=(2, 3))
    cov = ((xa - mu_a[..., None, None]) * (xb - mu_b[..., None, None])).mean(axis=(2, 3))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return float(s.mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path, help="record hashes (and keep the bytes beside)")
    group.add_argument("--compare", type=Path, help="compare with a recorded file")
    args = parser.parse_args()
    record: dict[str, str] = {}
    blobs: dict[str, bytes] = {}
    for path in corpus_files():
        name = str(path.relative_to(CORPUS))
        try:
            made = outputs(path)
        except Exception as exc:  # refused inputs are recorded as their error
            record[name] = f"error: {type(exc).__name__}"
            continue
        for variant, data in made.items():
            record[f"{name} {variant}"] = hashlib.sha256(data).hexdigest()
            blobs[f"{name} {variant}"] = data
    if args.write:
        args.write.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        store = args.write.with_suffix(".blobs")
        store.mkdir(exist_ok=True)
        for key, data in blobs.items():
            (store / hashlib.sha256(key.encode()).hexdigest()).write_bytes(data)
        print(f"{len(record)} outputs recorded in {args.write}")
        return 0
    before = json.loads(args.compare.read_text())
    store = args.compare.with_suffix(".blobs")
    changed = sorted(k for k in before.keys() | record.keys() if before.get(k) != record.get(k))
    for key in changed:
        old_blob = store / hashlib.sha256(key.encode()).hexdigest()
        ssim = "n/a"
        if key in blobs and old_blob.exists():
            ssim = f"{block_ssim(luma(old_blob.read_bytes()), luma(blobs[key])):.4f}"
        print(f"changed: {key}  SSIM vs before {ssim}")
    print(f"{len(record)} outputs, {len(changed)} changed")
    return 1 if changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
