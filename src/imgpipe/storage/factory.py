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
    raise ValueError(
        f"IMGPIPE_STORAGE_URL: unsupported scheme {parsed.scheme!r} in {url!r}; "
        "use file://PATH (s3:// arrives with the scale-out release)."
    )
