"""The image engine: the only package that imports pyvips.

This module only sets libvips up (``configure``); callers import what they use from its
modules: ``probe.probe`` (the gate), ``pipeline.render_variants`` (the worker),
``render.render`` (on-demand renders); the batch CLI runs the worker's pipeline.
"""

from __future__ import annotations

import contextlib
import os


def configure(concurrency: int | None = None, cache_max: int = 0) -> None:
    """Set libvips up for untrusted input. Call once per process before any work.

    Untrusted loaders (and SVG, PDF, anything via ImageMagick) are blocked even though
    imgpipe names its loaders explicitly, as a second line of defence. The operation cache
    is off: each image is seen once, and the cache would only hold memory.
    """
    if concurrency is not None:
        os.environ["VIPS_CONCURRENCY"] = str(concurrency)
    import pyvips

    pyvips.block_untrusted_set(True)
    for loader in ("VipsForeignLoadSvg", "VipsForeignLoadPdf", "VipsForeignLoadMagick"):
        with contextlib.suppress(pyvips.Error):  # not built into this libvips
            pyvips.operation_block_set(loader, True)
    pyvips.cache_set_max(cache_max)
    if concurrency is not None:
        pyvips.concurrency_set(concurrency)
