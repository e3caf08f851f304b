"""Upload file names are kept for people to read, never trusted (domain/filenames.py)."""

from __future__ import annotations

import pytest

from imgpipe.domain.filenames import MAX_FILENAME_CHARS, clean_filename


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("cat.jpg", "cat.jpg"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\Pictures\\holiday.png", "holiday.png"),
        ("/tmp/a/b/c.webp", "c.webp"),
        ("fête à Zürich.jpeg", "fête à Zürich.jpeg"),
        ("写真 2024.heic", "写真 2024.heic"),
        ("صورة.png", "صورة.png"),
        ("evil\x1b[31mred\x07.gif", "evil[31mred.gif"),
        ("nul\x00byte.png", "nulbyte.png"),
        ("invoice\u202egpj.exe", "invoicegpj.exe"),  # no right-to-left override
        ("zero\u200bwidth.png", "zerowidth.png"),
        ("  tabs\tand\n\nnewlines  .png ", "tabs and newlines .png"),
        ("e\u0301te\u0301.jpg", "été.jpg"),  # NFC: one code point per letter
    ],
)
def test_names_keep_their_letters_and_lose_paths_and_controls(raw: str, kept: str) -> None:
    assert clean_filename(raw) == kept


@pytest.mark.parametrize("raw", [None, "", "   ", "/", "dir/", "..", ".", "\x00\x01", "a/.."])
def test_nothing_usable_is_none(raw: str | None) -> None:
    assert clean_filename(raw) is None


def test_a_long_name_is_cut_keeping_its_extension() -> None:
    name = clean_filename("x" * 1000 + ".jpeg")
    assert name is not None and len(name) == MAX_FILENAME_CHARS
    assert name.endswith("x.jpeg")
    bare = clean_filename("é" * 1000)
    assert bare == "é" * MAX_FILENAME_CHARS
