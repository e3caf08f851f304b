"""Request headers parsed into the values the use cases take (RFC 9110)."""

from __future__ import annotations


def accepted_types(accept: str) -> frozenset[str]:
    """Media types ``Accept`` names explicitly with q > 0, lower-cased. Wildcards are
    kept as written and count for nothing downstream: a client sending only */* may not
    decode AVIF. An unreadable q is 0."""
    types = set()
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            types.add(media.lower())
    return frozenset(types)


def entity_tags(if_none_match: str | None) -> frozenset[str]:
    """The tags of ``If-None-Match``, weak ones without their ``W/`` (a GET compares
    weakly); empty without the header."""
    if not if_none_match:
        return frozenset()
    return frozenset(tag.strip().removeprefix("W/") for tag in if_none_match.split(","))
