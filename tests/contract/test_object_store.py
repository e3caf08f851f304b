"""The ObjectStore contract, run against every adapter (local disk and S3), then what only
S3 has: checksums the store verifies, presigned POST forms, prefixes, batched deletes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from imgpipe.domain.errors import ChecksumMismatch, NotFound, StorageUnavailable
from imgpipe.storage.base import DirectUploadForm, ObjectMeta, ObjectStore
from imgpipe.storage.factory import store_from_url
from imgpipe.storage.local import LocalStore
from imgpipe.storage.s3 import S3Store
from s3server import seed_objects


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield store_from_url(f"file://{tmp_path / 'objects'}")
    else:
        # Looked up here, so the S3 server starts only when an S3 case runs.
        bucket = request.getfixturevalue("s3_bucket")
        endpoint = request.getfixturevalue("s3_endpoint")
        yield store_from_url(f"s3://{bucket}/objects", s3_endpoint_url=endpoint)


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
    with pytest.raises(NotFound):
        store.size("nothing/here")
    with pytest.raises(NotFound), store.local_file("nothing/here"):
        pass
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


@pytest.mark.parametrize("prefix", ["", "/", "//"])
def test_an_empty_prefix_never_empties_the_store(store: ObjectStore, prefix: str) -> None:
    store.put_bytes("originals/aa/kept", b"x")
    with pytest.raises(ValueError):
        store.delete_prefix(prefix)
    assert store.get_bytes("originals/aa/kept") == b"x"


def test_check_passes_on_a_writable_store(store: ObjectStore) -> None:
    store.check()


def test_local_file_holds_the_object(store: ObjectStore) -> None:
    data = bytes(range(256)) * 5000
    store.put_bytes("originals/ef/z", data)
    with store.local_file("originals/ef/z") as path:
        assert path.read_bytes() == data


def test_delete_prefix_is_a_directory_not_a_string_prefix(store: ObjectStore) -> None:
    store.put_bytes("variants/aa/sha1/a.webp", b"a")
    store.put_bytes("variants/aa/sha10/a.webp", b"b")
    store.delete_prefix("variants/aa/sha1")
    assert not store.exists("variants/aa/sha1/a.webp")
    assert store.exists("variants/aa/sha10/a.webp")


# --- S3 only --------------------------------------------------------------------------


def _s3(bucket: str, endpoint: str, prefix: str = "objects", **options: Any) -> S3Store:
    return S3Store(bucket, prefix, endpoint_url=endpoint, **options)


def _raw_client(endpoint: str) -> Any:
    """A plain boto3 client, to look at the bucket without going through S3Store."""
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"})
    )


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_s3_puts_carry_the_sha256_and_the_store_keeps_it(
    s3_bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    store = _s3(s3_bucket, s3_endpoint)
    data = b"original bytes" * 100
    source, sha = _staged(tmp_path, data)
    store.put_file("originals/ab/x", source, sha)
    store.put_bytes("variants/ab/x/p.webp", b"variant")

    client = _raw_client(s3_endpoint)
    for name, body in (
        ("objects/originals/ab/x", data),
        ("objects/variants/ab/x/p.webp", b"variant"),
    ):
        head = client.head_object(Bucket=s3_bucket, Key=name, ChecksumMode="ENABLED")
        assert head["ChecksumSHA256"] == _b64_sha256(body)


@pytest.mark.parametrize("method", ["put_file", "put_bytes"])
def test_s3_refuses_bytes_corrupted_on_the_way(
    s3_bucket: str, s3_endpoint: str, tmp_path: Path, method: str
) -> None:
    store = _s3(s3_bucket, s3_endpoint)
    data = b"\xff\xd8" + bytes(range(256)) * 40

    def flip_a_bit(request: Any, **_: Any) -> None:
        # After the checksum header is set, before the bytes leave: what a faulty NIC,
        # proxy or buffer would do. The store must notice and keep nothing.
        body = request.body if isinstance(request.body, bytes) else request.body.read()
        request.body = bytes([body[0] ^ 1]) + body[1:]

    store._client.meta.events.register("before-send.s3.PutObject", flip_a_bit)
    with pytest.raises(ChecksumMismatch, match="BadDigest"):
        if method == "put_file":
            source, sha = _staged(tmp_path, data)
            store.put_file("originals/ab/x", source, sha)
        else:
            store.put_bytes("originals/ab/x", data)
    assert not store.exists("originals/ab/x")


def test_s3_presigned_post_uploads_straight_to_the_bucket(s3_bucket: str, s3_endpoint: str) -> None:
    store = _s3(s3_bucket, s3_endpoint)
    before = datetime.now(UTC)
    post = store.presigned_post(
        "uploads/img_1", max_bytes=1000, expires_s=600, content_type="image/png"
    )
    assert post["method"] == "POST"
    assert post["url"] == f"{s3_endpoint}/{s3_bucket}"
    expires_at = datetime.fromisoformat(post["expires_at"])
    assert 598 <= (expires_at - before).total_seconds() <= 601

    # A real multipart POST, as a browser sends it: the policy fields, then the file.
    data = b"\x89PNG\r\n\x1a\n" + b"x" * 200
    answer = httpx.post(
        post["url"], data=post["fields"], files={"file": ("a.png", data, "image/png")}
    )
    assert answer.status_code == 204, answer.text
    assert store.get_bytes("uploads/img_1") == data

    # moto enforces no POST policy (size, expiry, signature): an oversized POST would be
    # stored. So the cap is checked where S3 reads it, in the signed policy document.
    fields = post["fields"]
    assert fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    assert fields["key"] == "objects/uploads/img_1"
    policy = json.loads(base64.b64decode(fields["policy"]))
    assert ["content-length-range", 1, 1000] in policy["conditions"]
    assert {"key": "objects/uploads/img_1"} in policy["conditions"]
    assert {"bucket": s3_bucket} in policy["conditions"]
    assert {"Content-Type": "image/png"} in policy["conditions"]
    policy_expiry = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    assert expires_at <= policy_expiry


def test_s3_direct_upload_form_is_a_presigned_post(s3_bucket: str, s3_endpoint: str) -> None:
    form = _s3(s3_bucket, s3_endpoint).direct_upload_form("uploads/img_2", 5000, 900)
    assert isinstance(form, DirectUploadForm)
    assert form.method == "POST"
    assert form.expires_at.tzinfo is not None
    assert form.fields["key"] == "objects/uploads/img_2"
    assert form.headers == {}


def test_s3_prefixes_keep_stores_apart(s3_bucket: str, s3_endpoint: str) -> None:
    tenant_a = _s3(s3_bucket, s3_endpoint, "tenant-a")
    tenant_b = _s3(s3_bucket, s3_endpoint, "/tenant-b/")  # slashes around a prefix are ignored
    whole_bucket = _s3(s3_bucket, s3_endpoint, "")
    tenant_a.put_bytes("variants/aa/sha1/a.webp", b"a")
    tenant_b.put_bytes("variants/aa/sha1/a.webp", b"b")

    assert whole_bucket.get_bytes("tenant-a/variants/aa/sha1/a.webp") == b"a"
    assert whole_bucket.get_bytes("tenant-b/variants/aa/sha1/a.webp") == b"b"
    tenant_a.delete_prefix("variants/aa/sha1/")
    assert not tenant_a.exists("variants/aa/sha1/a.webp")
    assert tenant_b.get_bytes("variants/aa/sha1/a.webp") == b"b"
    listed = _raw_client(s3_endpoint).list_objects_v2(Bucket=s3_bucket).get("Contents", [])
    assert [item["Key"] for item in listed] == ["tenant-b/variants/aa/sha1/a.webp"]


def test_s3_delete_prefix_deletes_past_one_page(s3_bucket: str, s3_endpoint: str) -> None:
    store = _s3(s3_bucket, s3_endpoint)
    # Over 1000 keys: two list pages and two DeleteObjects batches. Most are put straight
    # into the server (a thousand PUTs through boto3 take seconds); a hundred go through
    # the store's one client from many threads, as worker threads would send them.
    names = [f"objects/variants/ab/many/{i:04d}.webp" for i in range(1000)]
    seed_objects(s3_bucket, names, b"v")
    keys = [f"variants/ab/many/{i:04d}.webp" for i in range(1000, 1100)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda key: store.put_bytes(key, b"v"), keys))
    store.put_bytes("variants/ab/other/keep.webp", b"keep")
    client = _raw_client(s3_endpoint)
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=s3_bucket, Prefix="objects/variants/ab/many/"
    )
    assert sum(page["KeyCount"] for page in pages) == 1100
    batches: list[int] = []
    store._client.meta.events.register(
        "provide-client-params.s3.DeleteObjects",
        lambda params, **_: batches.append(len(params["Delete"]["Objects"])),
    )

    store.delete_prefix("variants/ab/many/")

    assert sorted(batches) == [100, 1000]

    left = client.list_objects_v2(Bucket=s3_bucket, Prefix="objects/")
    assert [item["Key"] for item in left.get("Contents", [])] == [
        "objects/variants/ab/other/keep.webp"
    ]


def test_s3_never_deletes_a_whole_store(s3_bucket: str, s3_endpoint: str) -> None:
    with pytest.raises(ValueError):
        _s3(s3_bucket, s3_endpoint).delete_prefix("/")


def test_s3_local_file_is_removed_afterwards(s3_bucket: str, s3_endpoint: str) -> None:
    store = _s3(s3_bucket, s3_endpoint)
    store.put_bytes("originals/ab/x", b"bytes")
    with store.local_file("originals/ab/x") as path:
        assert path.read_bytes() == b"bytes"
    assert not path.exists()


def test_s3_a_missing_bucket_is_unavailable_not_not_found(
    s3_endpoint: str, aws_test_env: None
) -> None:
    store = _s3("imgpipe-test-no-such-bucket", s3_endpoint)
    with pytest.raises(StorageUnavailable, match="NoSuchBucket"):
        store.get_bytes("originals/ab/x")
    with pytest.raises(StorageUnavailable):
        store.check()


def _refusing_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # bound, then closed: nothing listens there, connections are refused


def test_s3_unreachable_endpoint_is_unavailable_quickly(aws_test_env: None) -> None:
    store = _s3(
        "imgpipe-test-bucket",
        f"http://127.0.0.1:{_refusing_port()}",
        connect_timeout_s=1,
        read_timeout_s=1,
        max_retries=0,
    )
    calls: list[Callable[[], object]] = [
        store.check,
        lambda: store.get_bytes("originals/ab/x"),
        lambda: store.iter_bytes("originals/ab/x"),
        lambda: store.exists("originals/ab/x"),  # unknown is not "absent"
        lambda: store.put_bytes("originals/ab/x", b"x"),
    ]
    started = time.monotonic()
    for call in calls:
        with pytest.raises(StorageUnavailable) as caught:
            call()
        assert caught.value.retryable
    assert time.monotonic() - started < 5


def test_storage_url_chooses_s3(aws_test_env: None) -> None:
    store = store_from_url("s3://my-bucket/some/prefix/", s3_endpoint_url="http://127.0.0.1:9")
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix) == ("my-bucket", "some/prefix")
    with pytest.raises(ValueError, match="IMGPIPE_STORAGE_URL"):
        store_from_url("s3:///prefix-without-bucket")


def test_local_store_collects_temp_files_of_killed_writers_only(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    store.put_bytes("variants/ab/abc/d.webp", b"finished")
    directory = tmp_path / "objects" / "variants" / "ab" / "abc"
    stale, fresh = directory / ".tmp-killed", directory / ".tmp-writing"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    an_hour_ago = time.time() - 3700
    os.utime(stale, (an_hour_ago, an_hour_ago))
    assert store.remove_stale_temp_files(older_than_s=3600) == 1
    assert not stale.exists() and fresh.exists()  # a write in progress is left alone
    assert store.get_bytes("variants/ab/abc/d.webp") == b"finished"


# --- listing, purge, headers, protection (issue 14) ----------------------------------------


def test_list_keys_names_every_object_under_a_prefix_and_only_those(store: ObjectStore) -> None:
    for key in ("originals/ab/one", "originals/cd/two", "originalsx/ab/three", "variants/v"):
        store.put_bytes(key, b"x")
    listed = sorted(key for key, _ in store.list_keys("originals/"))
    assert listed == ["originals/ab/one", "originals/cd/two"]
    assert all(abs(mtime - time.time()) < 3600 for _, mtime in store.list_keys("originals/"))
    with pytest.raises(ValueError):
        list(store.list_keys(""))


def test_purge_removes_a_key_or_a_prefix_and_counts(store: ObjectStore) -> None:
    store.put_bytes("variants/ab/sha1/a.webp", b"a")
    store.put_bytes("variants/ab/sha1/b.webp", b"b")
    store.put_bytes("variants/ab/sha10/c.webp", b"c")
    store.put_bytes("originals/ab/sha1", b"o")
    assert store.purge("variants/ab/sha1/").removed == 2
    assert store.exists("variants/ab/sha10/c.webp")  # a "directory", not a string prefix
    result = store.purge("originals/ab/sha1")
    assert (result.removed, result.locked) == (1, ())
    assert not store.exists("originals/ab/sha1")
    assert store.purge("originals/ab/sha1").removed == 0  # twice is fine


def test_set_meta_is_idempotent(store: ObjectStore) -> None:
    store.put_bytes("variants/m.webp", b"w", ObjectMeta.public("image/webp"))
    assert store.set_meta("variants/m.webp", ObjectMeta.public("image/webp")) is False
    assert store.get_bytes("variants/m.webp") == b"w"


def test_s3_keeps_headers_repairs_them_and_purges_every_version(
    s3_bucket: str, s3_endpoint: str
) -> None:
    s3 = S3Store(s3_bucket, "p", endpoint_url=s3_endpoint)
    client = s3._client
    client.put_bucket_versioning(Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bytes("originals/ab/o", b"one", ObjectMeta.original("image/jpeg"))
    head = client.head_object(Bucket=s3_bucket, Key="p/originals/ab/o")
    assert (head["ContentType"], head["CacheControl"], head["ContentDisposition"]) == (
        "image/jpeg",
        "private, max-age=0, no-store",
        "attachment",
    )
    client.put_object(Bucket=s3_bucket, Key="p/variants/v.webp", Body=b"two")
    assert s3.set_meta("variants/v.webp", ObjectMeta.public("image/webp")) is True
    head = client.head_object(Bucket=s3_bucket, Key="p/variants/v.webp")
    assert (head["ContentType"], head["CacheControl"]) == (
        "image/webp",
        "public, max-age=31536000, immutable",
    )
    assert s3.get_bytes("variants/v.webp") == b"two"  # the copy keeps the bytes (and checksum)

    s3.put_bytes("originals/ab/o", b"overwritten")  # a second version
    s3.delete("originals/ab/o")  # and a delete marker
    assert s3.protection().versioning == "enabled"
    assert s3.purge("originals/ab/o").removed == 3
    versions = client.list_object_versions(Bucket=s3_bucket, Prefix="p/originals/")
    assert not versions.get("Versions") and not versions.get("DeleteMarkers")
    url = s3.presigned_get("variants/v.webp", 60)
    assert url is not None and httpx.get(url).content == b"two"
