"""`imgpipe worker`, except that an original holding POISON kills its process mid-render.

    python tests/faults/poison_worker.py worker --concurrency 2

Simulates a decoder that crashes (a libvips segfault) on one particular input, without a
test hook in the product: before the CLI starts, the engine's ``render_variants`` is
replaced, wherever imgpipe imported it, by a wrapper that SIGKILLs the calling process
when the original file contains POISON, and otherwise renders as usual. Celery's prefork
pool children are forked from this process, so they inherit the wrapper.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

POISON = b"imgpipe-poison"


def _install() -> None:
    import imgpipe.container  # noqa: F401  (imports every module that uses the engine)
    from imgpipe.engine import pipeline

    original = pipeline.render_variants

    def render_variants(path: Path, *args: Any, **kwargs: Any) -> Any:
        if POISON in Path(path).read_bytes():
            os.kill(os.getpid(), signal.SIGKILL)
        return original(path, *args, **kwargs)

    patched = [
        name
        for name, module in list(sys.modules.items())
        if name.startswith("imgpipe") and getattr(module, "render_variants", None) is original
    ]
    for name in patched:
        sys.modules[name].render_variants = render_variants  # type: ignore[attr-defined]
    assert "imgpipe.services.process" in patched, f"render_variants not found: {patched}"
    print(f"poison_worker: render_variants patched in {', '.join(sorted(patched))}", flush=True)


if __name__ == "__main__":
    _install()
    from imgpipe.cli.main import app

    app(prog_name="imgpipe")
