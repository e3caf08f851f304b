"""Local storage full: a small tmpfs holds the store and the staging area.

An upload that does not fit answers 507 ``insufficient_storage``, leaves no partial
original and no staging file behind, and the service takes uploads again once space
returns. The tmpfs is unmounted in teardown, whatever happens.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from integration.conftest import (
    ImgpipeServer,
    assert_done,
    assert_problem,
    upload,
    upload_ok,
    wait_done,
)
from integration.images import noisy, unique_png

VOLUME_BYTES = 4 * 1024 * 1024


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (CI runs as root, where `mount -t tmpfs` works)."""
    volume = tmp_path / "volume"
    volume.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={VOLUME_BYTES},mode=0700", "tmpfs", str(volume)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert mounted.returncode == 0, f"cannot mount a tmpfs here: {mounted.stderr}"
    try:
        yield volume
    finally:
        # Lazy: a process we failed to stop must not keep the mount alive after the test.
        subprocess.run(["umount", "-l", str(volume)], capture_output=True, timeout=30, check=False)


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    "staging_on_volume",
    [True, False],
    ids=["staging-and-store-full", "store-full-staging-elsewhere"],
)
def test_a_full_volume_answers_507_leaves_nothing_partial_and_recovers(
    tmp_path: Path, small_volume: Path, staging_on_volume: bool
) -> None:
    """Staging on the full volume fails while the upload streams in; staging elsewhere
    fails in the store's copy across filesystems (storage/local.py)."""
    objects = small_volume / "objects"
    staging_root = (small_volume if staging_on_volume else tmp_path) / "imgpipe-data"
    settings = {
        "IMGPIPE_DATA_DIR": str(staging_root),
        "IMGPIPE_STORAGE_URL": f"file://{objects}",
        # The database lives elsewhere: only the objects' volume is full.
        "IMGPIPE_DATABASE_URL": f"sqlite:///{tmp_path / 'imgpipe.db'}",
    }
    server = ImgpipeServer(tmp_path / "data", settings=settings)
    server.start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            assert_done(wait_done(client, upload_ok(client, unique_png(1), "small.png")["id"]))
            stored_before = {p: p.stat().st_size for p in _files(objects)}

            big = noisy(1400, 1000, seed=7)  # incompressible: about 1.5 MB
            filler = small_volume / "filler"
            free = _free_bytes(small_volume)
            filler.write_bytes(b"\0" * max(0, free - len(big) // 2))
            started = time.monotonic()
            refused = upload(client, big, "big.jpg")
            answer_s = time.monotonic() - started
            assert_problem(refused, 507, "insufficient_storage")

            # Nothing partial: the store holds exactly what it held, and staging is empty.
            assert {p: p.stat().st_size for p in _files(objects)} == stored_before
            assert (staging_root / "staging").is_dir()
            assert not _files(staging_root / "staging"), _files(staging_root / "staging")
            assert not list(objects.rglob(".tmp-*"))

            filler.unlink()  # space returns
            image = upload_ok(client, big, "big.jpg")
            assert_done(wait_done(client, image["id"], timeout=90))
            original = client.get(f"/v1/images/{image['id']}/original")
            assert original.status_code == 200 and original.content == big
    finally:
        server.stop()
    where = "staging and store" if staging_on_volume else "store only"
    print(f"\nFIGURES disk full ({where}): 507 insufficient_storage in {answer_s * 1000:.0f} ms")


def _free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize
