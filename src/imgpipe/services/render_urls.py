"""Signed render URLs for a key holder's own images (``POST /v1/images/{id}/render-url``).

The web page cannot hold the signing key, and should not: the server signs, and only for
an image the caller owns (another owner's is 404, as everywhere). The options go through
the same parser and canonical spelling as ``GET /v1/render`` and ``imgpipe sign``, so a
URL handed out here is one the render route accepts, and a bad option is the same 400
``bad_option`` naming the option. Every URL expires: whoever holds it gets that one
render without a key until then (docs/render.md, "Signing").
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from imgpipe.domain.errors import BadRequest
from imgpipe.domain.render_options import CONTROL_PARAMS, BadOption
from imgpipe.domain.signing import RENDER_PATH_PREFIX, sign_render_url
from imgpipe.services import queries
from imgpipe.services.deps import ServiceDeps

DEFAULT_EXPIRES_IN_S = 3600
MAX_EXPIRES_IN_S = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class SignedRenderUrl:
    path: str  # /v1/render/ID?...&exp=...&sig=...
    expires_at: int  # Unix seconds


def signed_render_url(
    deps: ServiceDeps,
    owner: str,
    image_id: str,
    options: Mapping[str, str | int | float | bool],
    expires_in_s: int = DEFAULT_EXPIRES_IN_S,
    now: float | None = None,
) -> SignedRenderUrl:
    """A signed, expiring render path for one of ``owner``'s images.

    Raises NotFound for an image the owner does not have, BadOption for an option the
    render route would refuse, BadRequest for an expiry out of range.
    """
    if not 1 <= expires_in_s <= MAX_EXPIRES_IN_S:
        raise BadRequest(
            f"expires_in must be between 1 and {MAX_EXPIRES_IN_S} seconds; got {expires_in_s}."
        )
    for name, value in options.items():
        if name in CONTROL_PARAMS:
            raise BadOption(name, "not an option: the server sets exp and sig", str(value))
    queries.get_image(deps, image_id, owner)  # 404 unless it is the caller's
    pairs = [(name, _spelled(value)) for name, value in options.items()]
    expires_at = int(now if now is not None else time.time()) + expires_in_s
    path = f"{RENDER_PATH_PREFIX}{image_id}"
    query = urlencode(pairs)
    signed = sign_render_url(f"{path}?{query}" if query else path, deps.signing_key, expires_at)
    return SignedRenderUrl(signed, expires_at)


def _spelled(value: str | int | float | bool) -> str:
    """JSON values as a query string would carry them (true -> 1)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
