"""Temporary local copies of remote objects, and the sweep for those a killed process left.

``S3Store.local_file`` downloads an object to ``<tmp>/imgpipe-s3-*`` and removes it when
the caller is done; a worker killed mid-job (SIGKILL, the OOM killer) never gets there,
so each host sweeps its own temp directory for copies older than any job can last.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

S3_TEMP_PREFIX = "imgpipe-s3-"


def remove_stale_temp_files(
    older_than_s: float = 3600.0, directory: Path | None = None, prefix: str = S3_TEMP_PREFIX
) -> int:
    """Delete ``prefix*`` files in ``directory`` (the system temp dir) older than
    ``older_than_s``; how many went. Young ones may be in use and are left alone."""
    folder = directory or Path(tempfile.gettempdir())
    cutoff = time.time() - older_than_s
    removed = 0
    for leftover in folder.glob(prefix + "*"):
        with contextlib.suppress(OSError):
            if leftover.is_file() and leftover.stat().st_mtime < cutoff:
                leftover.unlink()
                removed += 1
    return removed
