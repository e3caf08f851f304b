"""API keys and the caller a request acts for (their errors live in domain/errors.py).

A key is ``imgp_`` + 43 URL-safe characters (256 random bits). Only its sha256 is stored:
a key this long cannot be guessed, so a fast hash is enough (no salt or KDF needed, the
same reasoning as GitHub's and Stripe's tokens). Keys are listed and revoked by a short
id (``key_...``) and shown by their first characters.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from imgpipe.domain.errors import BadIdempotencyKey

KEY_PREFIX = "imgp_"
SINGLE_USER_OWNER = "default"
_OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(6)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def shown_prefix(key: str) -> str:
    """Enough of a key for a person to recognise it in a list, never enough to use it."""
    return key[: len(KEY_PREFIX) + 6]


def check_owner(owner: str) -> str:
    if not _OWNER.match(owner):
        raise ValueError(
            "an owner name is 1-100 characters: letters, digits and _ . @ -, "
            f"starting with a letter or digit; got {owner!r}"
        )
    return owner


def check_idempotency_key(key: str) -> str:
    if not _IDEMPOTENCY_KEY.match(key):
        raise BadIdempotencyKey("Idempotency-Key must be 1-255 printable ASCII characters.")
    return key


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: an owner, through one key (None in single-user mode)."""

    owner: str
    key_id: str | None
    admin: bool
    callback_url: str | None = None  # the key's default webhook URL
