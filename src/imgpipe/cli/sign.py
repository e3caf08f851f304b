"""`imgpipe sign URL-OR-PATH`: print a signed on-demand render URL.

The key is the one the API uses: IMGPIPE_SIGNING_KEY, or the key generated on first start
in DATA_DIR/signing_key. Options are validated and written in canonical order first, so a
URL that signs is a URL that renders.
"""

from __future__ import annotations

import time

from imgpipe.config import Settings
from imgpipe.container import resolve_secret
from imgpipe.domain.signing import sign_render_url


def signed_url(
    settings: Settings,
    url_or_path: str,
    expires_in: int | None = None,
    expires_at: int | None = None,
) -> str:
    """The signed URL (raises BadRequest/BadOption for a path or option that is not valid)."""
    key = resolve_secret(settings.signing_key, settings.data_dir / "signing_key")
    if expires_in is not None:
        expires_at = int(time.time()) + expires_in
    return sign_render_url(url_or_path, key, expires_at)
