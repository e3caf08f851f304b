"""Every object key imgpipe writes, in one place. Keys are content-addressed."""

from __future__ import annotations

from imgpipe.domain.media import ImageFormat


def original(sha256: str) -> str:
    return f"originals/{sha256[:2]}/{sha256}"


def variant(sha256: str, profile_digest: str, fmt: ImageFormat) -> str:
    return f"variants/{sha256[:2]}/{sha256}/{profile_digest}.{fmt.extension}"


def variants_prefix(sha256: str) -> str:
    return f"variants/{sha256[:2]}/{sha256}/"


def render(sha256: str, options_digest: str, ext: str) -> str:
    """A cached on-demand render: original sha256, options digest, negotiated format."""
    return f"renders/{sha256[:2]}/{sha256}/{options_digest}.{ext}"


def render_source(sha256: str, version: int, *, large: bool = False) -> str:
    """The copy on-demand renders read instead of the original (engine/render_source.py),
    or with ``large`` its larger copy. Under the renders prefix: a cache like them,
    removed with them."""
    return f"renders/{sha256[:2]}/{sha256}/source-v{version}{'-large' if large else ''}.jpg"


def renders_prefix(sha256: str) -> str:
    return f"renders/{sha256[:2]}/{sha256}/"


def direct_upload(image_id: str) -> str:
    """Where a client's direct-to-storage upload lands before it is validated."""
    return f"uploads/{image_id}"
