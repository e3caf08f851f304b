"""Animated variants against their originals: bytes of the built-in profiles' WebP for
every animated file of the shared corpus (issue #12: a variant at the original's size is
never larger than the original).

    .venv/bin/python bench/animated_sizes.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from benchlib.corpus import SHARED

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from imgpipe.domain.media import Limits
from imgpipe.domain.profiles import ProfileSet
from imgpipe.engine.pipeline import Rendered, render_variants
from imgpipe.engine.probe import probe

LIMITS = Limits(max_upload_bytes=50 << 20, max_pixels=268_435_456, max_frames=500)


def main() -> int:
    specs = [s for p in ProfileSet.builtin().profiles.values() for s in p.variants()]
    files = sorted((SHARED / "corpus" / "formats").glob("*animated*"))
    worst = 0.0
    print(f"{'file':44} {'frames':>6} {'size':>9} {'original':>9}  variant bytes (ratio)")
    for path in files:
        facts = probe(path, LIMITS)
        started = time.perf_counter()
        result = render_variants(path, facts, specs)
        seconds = time.perf_counter() - started
        cells = []
        for name, out in result.outcomes.items():
            assert isinstance(out, Rendered), (path.name, name, out)
            ratio = len(out.data) / path.stat().st_size
            same_size = (out.width, out.height) == facts.upright_size
            if same_size:
                worst = max(worst, ratio)
            mark = "=" if same_size else ""
            cells.append(f"{name} {out.width}x{out.height}{mark} {len(out.data)} ({ratio:.2f})")
        print(
            f"{path.name:44} {facts.frames:>6} {facts.width}x{facts.height:<4} "
            f"{path.stat().st_size:>9}  " + "; ".join(cells) + f"  [{seconds:.1f} s]"
        )
    print(f"largest ratio of a variant at the original's size (=): {worst:.2f} (target <= 1.00)")
    return 0 if worst <= 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
