"""Objects in an S3 bucket (AWS, or any S3-compatible store: MinIO, Ceph, R2...), via boto3.

boto3 rather than obstore because direct uploads need presigned POST policies with a
``content-length-range`` condition (the store itself refuses an oversized upload), which
obstore does not offer.

One boto3 client per store, built in ``__init__`` and shared by every thread: clients are
thread-safe and keep a pool of open connections, and a new client (so a new TCP and TLS
handshake) per request is what turned thumbor-aws's 60 ms reads into 1.5 s.

Integrity: every put carries ``x-amz-checksum-sha256``, so S3 recomputes the digest of the
bytes it received and refuses the write (400 BadDigest) if a bit flipped on the way; reads
ask for the stored checksum back (``ChecksumMode``) and botocore checks the bytes against
it. Atomicity is S3's: a single PUT stores every byte or nothing.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, FlexibleChecksumError
from botocore.handlers import add_expect_header

from imgpipe.domain.errors import (
    ChecksumMismatch,
    ImgpipeError,
    InsufficientStorage,
    NotFound,
    StorageUnavailable,
)
from imgpipe.storage.base import DirectUploadForm, ObjectMeta, Protection, PurgeResult
from imgpipe.storage.hashing import sha256_file
from imgpipe.storage.tempfiles import S3_TEMP_PREFIX

_CHUNK = 1 << 20
# DeleteObjects takes at most 1000 keys per request.
_DELETE_BATCH = 1000
# SigV4 credentials in a presigned request are valid for at most seven days.
_MAX_PRESIGN_S = 7 * 24 * 3600

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
# AWS answers BadDigest when an x-amz-checksum-* header does not match the body; MinIO
# uses its own codes for the same refusal.
_CHECKSUM_CODES = frozenset(
    {"BadDigest", "XAmzContentChecksumMismatch", "XAmzContentSHA256Mismatch"}
)
_FULL_CODES = frozenset({"XMinioStorageFull", "InsufficientStorage"})
# What DeleteObjects answers for a version that object lock (retention or legal hold) keeps.
_LOCKED_CODES = frozenset({"AccessDenied", "InvalidRequest", "ObjectLocked"})


class PresignedPost(TypedDict):
    method: str
    url: str
    fields: dict[str, str]
    expires_at: str  # ISO 8601, UTC


class S3Store:
    """``s3://bucket/prefix``: every key is stored as ``prefix/key``."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        max_retries: int = 3,
        max_pool_connections: int = 32,
    ) -> None:
        if not bucket:
            raise ValueError("S3 bucket name is empty.")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix and any(part in ("", ".", "..") for part in self.prefix.split("/")):
            raise ValueError(f"S3 prefix {prefix!r} has an empty, '.' or '..' segment.")
        config = Config(
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            # "standard" retries throttling, 5xx and dropped connections with jittered
            # exponential backoff; max_attempts counts the retries after the first try.
            retries={"mode": "standard", "max_attempts": max_retries},
            # One pooled connection per concurrent caller (API threads, worker threads);
            # botocore's default of 10 would make busy threads wait for a free socket.
            max_pool_connections=max_pool_connections,
            # SigV2 is deprecated and refused in newer regions, yet botocore still signs
            # presigned POSTs with it by default (seen in us-east-1 with an endpoint URL).
            signature_version="s3v4",
            # MinIO, Ceph and moto serve buckets as paths, not as virtual hosts.
            s3={"addressing_style": "path"} if endpoint_url else None,
        )
        self._endpoint_url = endpoint_url
        self._config = config
        self._client_pid = -1
        self._client_lock = threading.Lock()
        self._client_instance: Any = None

    @property
    def _client(self) -> Any:
        """One client per process, reused for every call (its pool keeps connections warm).

        Built on first use in each process: a Celery prefork child must not share the
        parent's pooled sockets, so a client inherited across fork is replaced.
        """
        if self._client_pid != os.getpid():
            with self._client_lock:
                if self._client_pid != os.getpid():
                    # A session of its own: boto3's default session is shared module state
                    # and is not thread-safe to build clients from. Credentials and region
                    # come from the usual chain (AWS_* environment, shared config files,
                    # instance roles).
                    session = boto3.session.Session()
                    client = session.client(
                        "s3", endpoint_url=self._endpoint_url, config=self._config
                    )
                    # botocore asks for `Expect: 100-continue` on uploads; a connection
                    # dropped right after the interim 100 answer makes it spin forever
                    # (botocore 1.44, reproduced by tests/faults). Sending the body at once
                    # costs one wasted transfer on a refusal, never a hung worker.
                    client.meta.events.unregister("before-call.s3", add_expect_header)
                    self._client_instance = client
                    self._client_pid = os.getpid()
        return self._client_instance

    def __repr__(self) -> str:
        return f"S3Store(s3://{self.bucket}/{self.prefix})"

    # --- writes ---------------------------------------------------------------------

    def put_file(self, key: str, source: Path, sha256: str, meta: ObjectMeta | None = None) -> None:
        name = self._name(key)
        with _storage_errors(key):
            # Checked here as well as by the store: a server that keeps the checksum header
            # without verifying it (moto does) would otherwise store what we were told not
            # to, and a caller's wrong hash costs no upload.
            if sha256_file(source) != sha256:
                raise ChecksumMismatch(f"Bytes staged for {key} do not match their sha256.")
            with source.open("rb") as body:
                self._put(name, body, bytes.fromhex(sha256), meta)
        source.unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes, meta: ObjectMeta | None = None) -> None:
        name = self._name(key)
        with _storage_errors(key):
            self._put(name, data, hashlib.sha256(data).digest(), meta)

    def _put(self, name: str, body: Any, digest: bytes, meta: ObjectMeta | None) -> None:
        self._client.put_object(
            Bucket=self.bucket,
            Key=name,
            Body=body,
            # The value header is what S3 verifies the body against; the algorithm header
            # is what the AWS SDKs send with it, and moto keeps the checksum only with it.
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=base64.b64encode(digest).decode("ascii"),
            # Stored with the object and sent back on every GET: a bucket behind a CDN
            # serves it with the right type and caching, no API process in the way.
            **_meta_args(meta or ObjectMeta()),
        )

    # --- reads ----------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes:
        with _storage_errors(key):
            body = self._get(key)
            try:
                data: bytes = body.read()
            finally:
                body.close()
        return data

    def iter_bytes(self, key: str, chunk_size: int = _CHUNK) -> Iterator[bytes]:
        # The GET is sent here, not inside the generator, so a missing key raises NotFound
        # before a response has started.
        with _storage_errors(key):
            body = self._get(key)
        return _stream(body, key, chunk_size)

    @contextlib.contextmanager
    def local_file(self, key: str) -> Iterator[Path]:
        with _storage_errors(key):
            fh = tempfile.NamedTemporaryFile(prefix=S3_TEMP_PREFIX, delete=False)  # noqa: SIM115
        path = Path(fh.name)
        try:
            with _storage_errors(key), fh:
                body = self._get(key)
                try:
                    for chunk in body.iter_chunks(_CHUNK):
                        fh.write(chunk)
                finally:
                    body.close()
            # Yielded outside the error mapping: the caller's own exceptions pass unchanged.
            yield path
        finally:
            path.unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        try:
            self._head(key)
        except NotFound:
            return False
        return True

    def size(self, key: str) -> int:
        length: int = self._head(key)["ContentLength"]
        return length

    # --- deletes --------------------------------------------------------------------

    def delete(self, key: str) -> None:
        # S3 answers 204 whether or not the key existed: deleting twice is fine.
        with _storage_errors(key):
            self._client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def delete_prefix(self, prefix: str) -> None:
        relative = prefix.strip("/")
        if not relative:
            raise ValueError("delete_prefix needs a non-empty prefix; it never empties a store.")
        # Always a "directory": variants/ab/sha1/ must not also match variants/ab/sha10/.
        listed = self._name(relative) + "/"
        with _storage_errors(prefix):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=listed
            )
            # Deleting what a page listed does not disturb the next page: the continuation
            # token remembers the last key, not a position.
            for page in pages:
                names = [item["Key"] for item in page.get("Contents", [])]
                for start in range(0, len(names), _DELETE_BATCH):
                    self._delete_batch(names[start : start + _DELETE_BATCH])

    def _delete_batch(self, names: list[str]) -> None:
        answer = self._client.delete_objects(
            Bucket=self.bucket,
            Delete={"Objects": [{"Key": name} for name in names], "Quiet": True},
        )
        # DeleteObjects succeeds as a request even when single keys fail; they are listed.
        if errors := answer.get("Errors"):
            first = errors[0]
            raise StorageUnavailable(
                f"S3 did not delete {len(errors)} object(s), e.g. {first.get('Key')}: "
                f"{first.get('Code')} {first.get('Message', '')}".rstrip()
            )

    # --- metadata, versions, protection -------------------------------------------

    def list_keys(self, prefix: str) -> Iterator[tuple[str, float]]:
        relative = prefix.strip("/")
        if not relative:
            raise ValueError("list_keys needs a non-empty prefix.")
        strip = len(self.prefix) + 1 if self.prefix else 0
        with _storage_errors(prefix):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._name(relative) + "/"
            )
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"][strip:], item["LastModified"].timestamp()

    def set_meta(self, key: str, meta: ObjectMeta) -> bool:
        head = self._head(key)
        current = ObjectMeta(
            head.get("ContentType", "binary/octet-stream"),
            head.get("CacheControl"),
            head.get("ContentDisposition"),
        )
        if current == meta:
            return False
        name = self._name(key)
        with _storage_errors(key):
            # A copy onto itself is how S3 changes an object's headers; REPLACE takes the
            # new ones instead of the old, and the checksum is computed again.
            self._client.copy_object(
                Bucket=self.bucket,
                Key=name,
                CopySource={"Bucket": self.bucket, "Key": name},
                MetadataDirective="REPLACE",
                ChecksumAlgorithm="SHA256",
                **_meta_args(meta),
            )
        return True

    def purge(self, key: str) -> PurgeResult:
        prefix = key.endswith("/")
        name = self._name(key.strip("/")) + ("/" if prefix else "")
        removed, locked = 0, []
        with _storage_errors(key):
            pages = self._client.get_paginator("list_object_versions").paginate(
                Bucket=self.bucket, Prefix=name
            )
            for page in pages:
                versions = [
                    {"Key": v["Key"], "VersionId": v["VersionId"]}
                    for kind in ("Versions", "DeleteMarkers")
                    for v in page.get(kind, [])
                    if prefix or v["Key"] == name
                ]
                for start in range(0, len(versions), _DELETE_BATCH):
                    batch = versions[start : start + _DELETE_BATCH]
                    answer = self._client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                    )
                    errors = answer.get("Errors", [])
                    removed += len(batch) - len(errors)
                    for error in errors:
                        if error.get("Code") in _LOCKED_CODES:
                            locked.append(
                                f"{error.get('Key')} version {error.get('VersionId')}: "
                                f"{error.get('Code')} {error.get('Message', '')}".rstrip()
                            )
                        else:
                            raise StorageUnavailable(
                                f"S3 did not delete {error.get('Key')}: {error.get('Code')}"
                            )
        return PurgeResult(removed, tuple(locked))

    def protection(self) -> Protection:
        with _storage_errors(f"bucket {self.bucket}"):
            status = self._client.get_bucket_versioning(Bucket=self.bucket).get("Status")
            try:
                lock = self._client.get_object_lock_configuration(Bucket=self.bucket)
            except ClientError as exc:
                # No lock configured is an error answer (ObjectLockConfigurationNotFoundError).
                if "ObjectLock" not in str(exc.response.get("Error", {}).get("Code", "")):
                    raise
                lock = {}
        config = lock.get("ObjectLockConfiguration", {})
        retention = config.get("Rule", {}).get("DefaultRetention", {})
        days = retention.get("Days") or (
            retention["Years"] * 365 if retention.get("Years") else None
        )
        return Protection(
            versioning=str(status).lower() if status else "off",
            object_lock=config.get("ObjectLockEnabled") == "Enabled",
            lock_mode=retention.get("Mode"),
            lock_days=days,
        )

    def presigned_get(self, key: str, expires_s: int) -> str | None:
        if not 1 <= expires_s <= _MAX_PRESIGN_S:
            raise ValueError(f"expires_s must be 1..{_MAX_PRESIGN_S}, not {expires_s}.")
        with _storage_errors(key):
            url: str = self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._name(key)},
                ExpiresIn=expires_s,
            )
        return url

    # --- health and direct uploads --------------------------------------------------

    def check(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable(
                f"S3 bucket {self.bucket} is not reachable: {_describe(exc)}."
            ) from exc

    def presigned_post(
        self, key: str, max_bytes: int, expires_s: int, content_type: str | None = None
    ) -> PresignedPost:
        """A form a client POSTs (multipart) straight to S3; S3 refuses more than max_bytes."""
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, not {max_bytes}.")
        if not 1 <= expires_s <= _MAX_PRESIGN_S:
            raise ValueError(f"expires_s must be 1..{_MAX_PRESIGN_S}, not {expires_s}.")
        fields: dict[str, str] = {}
        conditions: list[Any] = [["content-length-range", 1, max_bytes]]
        if content_type:
            fields["Content-Type"] = content_type
            conditions.append({"Content-Type": content_type})
        # Taken before signing, so the time we announce is never later than the policy's.
        expires_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=expires_s)
        with _storage_errors(key):
            post = self._client.generate_presigned_post(
                Bucket=self.bucket,
                Key=self._name(key),
                Fields=fields or None,
                Conditions=conditions,
                ExpiresIn=expires_s,
            )
        return PresignedPost(
            method="POST",
            url=post["url"],
            fields=dict(post["fields"]),
            expires_at=expires_at.isoformat().replace("+00:00", "Z"),
        )

    def direct_upload_form(self, key: str, max_bytes: int, expires_s: int) -> DirectUploadForm:
        post = self.presigned_post(key, max_bytes, expires_s)
        return DirectUploadForm(
            method=post["method"],
            url=post["url"],
            expires_at=datetime.fromisoformat(post["expires_at"]),
            fields=post["fields"],
        )

    # --- helpers --------------------------------------------------------------------

    def _name(self, key: str) -> str:
        """The S3 object name for a store key."""
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _get(self, key: str) -> Any:
        """The streaming body of ``key``; botocore verifies it against the stored sha256."""
        answer = self._client.get_object(
            Bucket=self.bucket, Key=self._name(key), ChecksumMode="ENABLED"
        )
        return answer["Body"]

    def _head(self, key: str) -> dict[str, Any]:
        with _storage_errors(key):
            answer: dict[str, Any] = self._client.head_object(
                Bucket=self.bucket, Key=self._name(key)
            )
        return answer


def _meta_args(meta: ObjectMeta) -> dict[str, str]:
    args = {"ContentType": meta.content_type}
    if meta.cache_control:
        args["CacheControl"] = meta.cache_control
    if meta.content_disposition:
        args["ContentDisposition"] = meta.content_disposition
    return args


def _check_key(key: str) -> None:
    # S3 names are opaque strings, but "..", "." and empty segments would mean something
    # else on a local disk (and to some proxies): refused on every store alike.
    if not key or any(part in ("", ".", "..") for part in key.split("/")):
        raise NotFound(f"Invalid key {key!r}.")


def _stream(body: Any, key: str, chunk_size: int) -> Iterator[bytes]:
    try:
        with _storage_errors(key):
            yield from body.iter_chunks(chunk_size)
    finally:
        # Returns the connection to the pool, also when the reader stops early.
        body.close()


@contextlib.contextmanager
def _storage_errors(what: str) -> Iterator[None]:
    """Translate boto3, botocore and local-file errors into imgpipe's error tree."""
    try:
        yield
    except ClientError as exc:
        raise _from_client_error(exc, what) from exc
    except FlexibleChecksumError as exc:
        raise ChecksumMismatch(f"Bytes read for {what} do not match their stored sha256.") from exc
    except BotoCoreError as exc:
        # Connection refused or reset, timeouts, missing credentials: botocore has already
        # retried what is worth retrying.
        raise StorageUnavailable(f"S3 request for {what} failed: {exc}") from exc
    except OSError as exc:  # the staged source or the local temporary copy
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage(f"No space left for a local copy of {what}.") from exc
        raise StorageUnavailable(f"Local file for {what} failed: {exc.strerror or exc}.") from exc


def _from_client_error(exc: ClientError, what: str) -> ImgpipeError:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    if code == "NoSuchBucket":
        # A missing bucket is a misconfigured store, not a missing object.
        return StorageUnavailable(f"S3 bucket does not exist (NoSuchBucket) for {what}.")
    if code in _NOT_FOUND_CODES or status == 404:
        return NotFound(f"No object stored under {what}.")
    if code in _CHECKSUM_CODES:
        return ChecksumMismatch(
            f"S3 refused {what}: the bytes it received fail their sha256 ({code})."
        )
    if code in _FULL_CODES or status == 507:
        return InsufficientStorage(f"The S3 store is full ({code or status}) for {what}.")
    # Throttling (SlowDown, 503), 5xx, and configuration errors such as AccessDenied or
    # InvalidAccessKeyId: all retryable infrastructure trouble, named by AWS's code.
    return StorageUnavailable(f"S3 error {code or status} for {what}: {_describe(exc)}.")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        return f"{error.get('Code', '?')} (HTTP {status}) {error.get('Message', '')}".rstrip()
    return str(exc)
