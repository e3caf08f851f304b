"""The ObjectStore contract, run against every adapter (local disk today; S3 next)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgpipe.domain.errors import ChecksumMismatch, NotFound
from imgpipe.storage.base import ObjectStore
from imgpipe.storage.factory import store_from_url


@pytest.fixture(params=["local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield store_from_url(f"file://{tmp_path / 'objects'}")


def _staged(tmp_path: Path, data: bytes) -> tuple[Path, str]:
    path = tmp_path / "staged.bin"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_put_file_stores_every_byte_and_consumes_the_source(
    store: ObjectStore, tmp_path: Path
) -> None:
    data = b"\x89PNG" + bytes(range(256)) * 1000
    source, sha = _staged(tmp_path, data)
    store.put_file("originals/ab/x", source, sha)
    assert store.get_bytes("originals/ab/x") == data
    assert b"".join(store.iter_bytes("originals/ab/x", chunk_size=1000)) == data
    assert store.size("originals/ab/x") == len(data)
    assert not source.exists()


def test_a_checksum_mismatch_leaves_nothing_under_the_key(
    store: ObjectStore, tmp_path: Path
) -> None:
    source, _ = _staged(tmp_path, b"real bytes")
    with pytest.raises(ChecksumMismatch):
        store.put_file("originals/cd/y", source, "0" * 64)
    assert not store.exists("originals/cd/y")


def test_put_bytes_overwrites_atomically(store: ObjectStore) -> None:
    store.put_bytes("variants/k.webp", b"first")
    store.put_bytes("variants/k.webp", b"second")
    assert store.get_bytes("variants/k.webp") == b"second"


def test_missing_keys_are_not_found(store: ObjectStore) -> None:
    assert not store.exists("nothing/here")
    with pytest.raises(NotFound):
        store.get_bytes("nothing/here")
    with pytest.raises(NotFound):
        store.iter_bytes("nothing/here")
    store.delete("nothing/here")  # deleting what is not there is fine


def test_delete_prefix_removes_only_that_prefix(store: ObjectStore) -> None:
    store.put_bytes("variants/aa/sha1/a.webp", b"a")
    store.put_bytes("variants/aa/sha1/b.webp", b"b")
    store.put_bytes("variants/aa/sha2/a.webp", b"c")
    store.delete_prefix("variants/aa/sha1/")
    assert not store.exists("variants/aa/sha1/a.webp")
    assert store.exists("variants/aa/sha2/a.webp")


def test_keys_cannot_escape_the_store(store: ObjectStore, tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"outside")
    with pytest.raises(NotFound):
        store.get_bytes("../secret")


def test_check_passes_on_a_writable_store(store: ObjectStore) -> None:
    store.check()
