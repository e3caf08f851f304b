"""Image ids: time-ordered so that 'newest first' is an index scan, opaque to users."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _b32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def new_image_id() -> str:
    """``img_`` + 10 chars of milliseconds + 16 random chars (a ULID in lower case)."""
    millis = time.time_ns() // 1_000_000
    return "img_" + _b32(millis, 10) + _b32(secrets.randbits(80), 16)


def is_image_id(value: str) -> bool:
    body = value.removeprefix("img_")
    return value.startswith("img_") and len(body) == 26 and all(c in _ALPHABET for c in body)
