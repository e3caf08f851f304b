"""Colour facts about an embedded ICC profile, read without lcms."""

from __future__ import annotations

import struct


def icc_description(icc: bytes) -> str:
    """The profile's ``desc`` tag (ICC v2 ``desc`` or v4 ``mluc``), or '' if unreadable."""
    try:
        (count,) = struct.unpack_from(">I", icc, 128)
        for i in range(min(count, 256)):
            sig, offset, _size = struct.unpack_from(">4sII", icc, 132 + 12 * i)
            if sig != b"desc":
                continue
            kind = icc[offset : offset + 4]
            if kind == b"desc":
                (length,) = struct.unpack_from(">I", icc, offset + 8)
                return icc[offset + 12 : offset + 12 + length].rstrip(b"\0").decode("latin-1")
            if kind == b"mluc":
                (records,) = struct.unpack_from(">I", icc, offset + 8)
                if records:
                    rlen, roff = struct.unpack_from(">II", icc, offset + 20)
                    text = icc[offset + roff : offset + roff + rlen]
                    return text.decode("utf-16-be", errors="replace")
    except (struct.error, UnicodeDecodeError):
        return ""
    return ""


def is_srgb_profile(icc: bytes) -> bool:
    """True for the common sRGB profiles (IEC 61966-2.1, its v4 variants, 'sRGB built-in').

    Skipping the transform for these is what lets imgpipe convert colour only where a
    profile asks for it; an unknown or unreadable profile is converted, to be safe.
    """
    if len(icc) < 132 or icc[16:20] != b"RGB ":
        return False
    return "srgb" in icc_description(icc).lower()
