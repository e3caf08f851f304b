"""HMAC-SHA256 signatures for URLs imgpipe hands out, compared in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac


def sign(key: bytes, message: str) -> str:
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def verify(key: bytes, message: str, signature: str) -> bool:
    return hmac.compare_digest(sign(key, message), signature)
