"""Choose an object store by URL scheme."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from imgpipe.storage.base import ObjectStore
from imgpipe.storage.local import LocalStore


def store_from_url(url: str, s3_endpoint_url: str | None = None) -> ObjectStore:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        # file://./relative and file:///absolute both work.
        path = (parsed.netloc + parsed.path) if parsed.netloc else parsed.path
        return LocalStore(Path(path))
    if parsed.scheme == "s3":
        bucket = parsed.netloc
        if not bucket or any(c in bucket for c in "@:/"):
            raise ValueError(
                f"IMGPIPE_STORAGE_URL: {url!r} names no bucket; use s3://BUCKET or "
                "s3://BUCKET/PREFIX (credentials from AWS_*, endpoint from "
                "IMGPIPE_S3_ENDPOINT_URL)."
            )
        # Imported here so that boto3 (the `s3` extra) is needed only by s3:// stores.
        try:
            from imgpipe.storage.s3 import S3Store
        except ImportError as exc:
            raise ValueError(
                f"IMGPIPE_STORAGE_URL: {url!r} needs boto3; install imgpipe[s3]."
            ) from exc
        return S3Store(bucket, parsed.path.strip("/"), endpoint_url=s3_endpoint_url or None)
    raise ValueError(
        f"IMGPIPE_STORAGE_URL: unsupported scheme {parsed.scheme!r} in {url!r}; "
        "use file://PATH or s3://BUCKET/PREFIX."
    )
