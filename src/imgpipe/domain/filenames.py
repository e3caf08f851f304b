"""The name an upload came with, made safe to store, show and offer as a download name.

A client's file name is text from the client: it may carry a whole path (old browsers send
``C:\\Users\\me\\cat.jpg``), control characters (a terminal escape, a NUL), invisible
formatting characters (a right-to-left override that makes ``gpj.exe`` read as
``exe.jpg``), or run to kilobytes. What is kept is the last path segment, NFC-normalised,
with runs of white space made one space and every other character of Unicode category C
(control, format, surrogate, private use, unassigned) removed, cut to ``MAX_FILENAME_CHARS``
characters keeping the extension. Letters of every script are kept. It is never used as a
storage key or a path: objects are addressed by content.
"""

from __future__ import annotations

import re
import unicodedata

MAX_FILENAME_CHARS = 255
_MAX_EXTENSION_CHARS = 16
_SPACES = re.compile(r"\s+")


def clean_filename(raw: str | None) -> str | None:
    """The sanitised name, or None when nothing usable is left (absent, empty, ``..``)."""
    if not raw:
        return None
    name = re.split(r"[/\\]", raw)[-1]
    name = unicodedata.normalize("NFC", name)
    name = _SPACES.sub(" ", name)  # before the controls go: a tab or newline is a space
    name = "".join(ch for ch in name if not unicodedata.category(ch).startswith("C"))
    name = _SPACES.sub(" ", name).strip()
    if name in ("", ".", ".."):
        return None
    if len(name) <= MAX_FILENAME_CHARS:
        return name
    stem, dot, ext = name.rpartition(".")
    if dot and stem and 0 < len(ext) <= _MAX_EXTENSION_CHARS:
        return stem[: MAX_FILENAME_CHARS - len(ext) - 1].rstrip() + "." + ext
    return name[:MAX_FILENAME_CHARS].rstrip()
