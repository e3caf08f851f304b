"""HMAC-SHA256 signatures for URLs imgpipe hands out, compared in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from imgpipe.domain.errors import BadSignature, Expired
from imgpipe.domain.media import ImageFormat
from imgpipe.domain.render_options import (
    RenderOptions,
    parse_options,
    split_render_path,
)


def sign(key: bytes, message: str) -> str:
    digest = hmac.new(key, message.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def verify(key: bytes, message: str, signature: str) -> bool:
    """Constant-time comparison; any text at all is a valid (non-matching) signature.

    Compared as bytes: ``hmac.compare_digest`` raises TypeError on a str that is not
    ASCII, and a forged ``sig`` is exactly where such text arrives.
    """
    given = signature.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(sign(key, message).encode(), given)


# --- render URLs ------------------------------------------------------------------------
#
# A render URL is signed over its canonical request: the path (with any format extension)
# and the query's pairs in the order they appear, each percent-encoded the one same way,
# `sig` excluded and always last. `imgpipe sign` and `sign_render_url` write the options in
# their canonical order (render_options.OPTION_ORDER) with `exp` after them, and the server
# refuses a signed query in any other order or spelling, so reordering, repeating or
# re-spelling a parameter always breaks the signature. Several keys are accepted at once
# (the current one and any previous ones), which lets a key be rotated without breaking
# pages that still carry URLs signed with the old one.

RENDER_PATH_PREFIX = "/v1/render/"


def render_message(path: str, pairs: Sequence[tuple[str, str]]) -> str:
    """The exact text a render signature covers (domain-separated from upload URLs)."""
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    return f"RENDER\n{path}\n{query}"


def verify_render(
    keys: Sequence[bytes], path: str, pairs: Sequence[tuple[str, str]], now: float
) -> list[tuple[str, str]]:
    """The query's pairs without ``sig`` if a key signed them and ``exp`` has not passed.

    Raises BadSignature (``bad_signature``) for a missing, misplaced, repeated or wrong
    signature, Expired when ``exp`` is in the past. Every key is tried with a
    constant-time comparison.
    """
    sig_positions = [i for i, (k, _) in enumerate(pairs) if k == "sig"]
    if not sig_positions:
        raise BadSignature("The render URL has no signature (sig); sign it with `imgpipe sign`.")
    if sig_positions != [len(pairs) - 1]:
        raise BadSignature("The render URL's signature (sig) must appear once, last.")
    signed = list(pairs[:-1])
    message = render_message(path, signed)
    given = pairs[-1][1]
    matches = [verify(key, message, given) for key in keys]  # no early exit
    if not any(matches):
        raise BadSignature("The render URL's signature does not match.")
    expiries = [v for k, v in signed if k == "exp"]
    if expiries:
        raw = expiries[0]
        if not raw.isdigit() or len(raw) > 12:
            raise BadSignature("The render URL's exp is not a Unix time in seconds.")
        check_expiry(int(raw), now)
    return signed


def check_expiry(expires_at: int | None, now: float) -> None:
    """Expired when a verified URL's ``exp`` (None: none) is in the past."""
    if expires_at is not None and expires_at < now:
        raise Expired("The render URL has expired (exp is in the past).")


def render_expiry(signed: Sequence[tuple[str, str]]) -> int | None:
    """The ``exp`` of a query ``verify_render`` accepted, or None: it never expires."""
    return next((int(v) for k, v in signed if k == "exp"), None)


def sign_render_url(url_or_path: str, key: bytes, expires_at: int | None = None) -> str:
    """Sign a render URL (or a path with its query): options validated and put in canonical
    order, ``exp`` added when given (Unix seconds), ``sig`` last.

    >>> sign_render_url("https://img.example.com/v1/render/img_x?h=200&w=300", b"secret")
    'https://img.example.com/v1/render/img_x?w=300&h=200&sig=...'
    """
    parts = urlsplit(url_or_path)
    _, path_format = split_render_path(parts.path)
    raw_pairs = parse_qsl(parts.query, keep_blank_values=True)
    if expires_at is None:
        given = [v for k, v in raw_pairs if k == "exp"]
        expires_at = int(given[0]) if given and given[0].isdigit() else None
    options = parse_options(raw_pairs, path_format)
    pairs = options.canonical_pairs()
    if expires_at is not None:
        pairs.append(("exp", str(int(expires_at))))
    signature = sign(key, render_message(parts.path, pairs))
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe=',')}" for k, v in pairs)
    query = f"{query}&sig={signature}" if query else f"sig={signature}"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def authorise_render(
    keys: Sequence[bytes],
    path: str,
    pairs: Sequence[tuple[str, str]],
    path_format: ImageFormat | None,
    now: float,
) -> RenderOptions:
    """The options of a signed render request, or BadSignature / Expired / BadOption.

    The signature is checked first, then the options are parsed, then the query must be
    the canonical spelling of those options (``exp`` after them): only a holder of a key
    could produce anything else, and refusing it means reordered or repeated parameters
    can never share a signature.
    """
    signed = verify_render(keys, path, pairs, now)
    options = parse_options(signed, path_format)
    canonical = options.canonical_pairs() + [(k, v) for k, v in signed if k == "exp"]
    if signed != canonical:
        raise BadSignature(
            "The signed render URL is not in canonical form; sign it with `imgpipe sign`."
        )
    return options


# --- signed variant URLs ----------------------------------------------------------------
#
# A variant's URL that needs no key: /v1/images/ID/variants/NAME?v=VERSION&sig=SIG. VERSION
# names the variant's bytes (its profile digest), so the URL changes whenever they do and a
# CDN may keep it forever. No expiry: it is what a public page embeds.


def variant_message(image_id: str, name: str, version: str) -> str:
    return f"VARIANT\n/v1/images/{image_id}/variants/{name}\n{version}"


def sign_variant(key: bytes, image_id: str, name: str, version: str) -> str:
    return sign(key, variant_message(image_id, name, version))


def verify_variant(
    keys: Sequence[bytes], image_id: str, name: str, version: str, signature: str
) -> None:
    """BadSignature unless one of ``keys`` signed this variant URL."""
    message = variant_message(image_id, name, version)
    if not any([verify(k, message, signature) for k in keys]):  # no early exit
        raise BadSignature("The variant URL's signature does not match.")
