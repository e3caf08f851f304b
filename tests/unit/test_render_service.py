"""The render use case's decisions that need no server: signing mode and negotiation."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from imgpipe.domain.errors import BadSignature
from imgpipe.domain.render_options import RenderConfig, parse_options
from imgpipe.services import render


def deps(allow_unsigned: bool) -> Any:
    return SimpleNamespace(signing_key=b"k", render=RenderConfig(allow_unsigned=allow_unsigned))


def request(pairs: list[tuple[str, str]]) -> render.RenderRequest:
    return render.RenderRequest("img_a", "/v1/render/img_a", pairs, None, "")


def test_unsigned_urls_are_refused_unless_explicitly_enabled() -> None:
    pairs = [("h", "10"), ("w", "20")]
    with pytest.raises(BadSignature):
        render._authorised_options(deps(False), request(pairs), "default")
    options = render._authorised_options(deps(True), request(pairs), "default")
    assert (options.width, options.height) == (20, 10)
    # Without an API key (owner None) only the signature can authorise, always.
    with pytest.raises(BadSignature):
        render._authorised_options(deps(True), request(pairs), None)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("image/avif,image/webp,image/apng,image/*,*/*;q=0.8", "avif"),
        ("image/webp,*/*", "webp"),
        ("image/avif;q=0,image/webp;q=0.5", "webp"),
        ("*/*", render.LEGACY),
        ("image/*", render.LEGACY),
        ("", render.LEGACY),
        ("image/avif;q=bogus", render.LEGACY),
    ],
)
def test_format_auto_negotiation(accept: str, expected: str) -> None:
    assert render._negotiate(parse_options([]), accept) == expected


def test_an_explicit_format_ignores_accept() -> None:
    assert render._negotiate(parse_options([("format", "png")]), "image/avif") == "png"


def test_jpeg_xl_only_where_accept_names_it() -> None:
    # The jxl extra is part of the test install (Makefile), so the server can write it.
    assert render._negotiate(parse_options([]), "image/jxl,image/avif,image/webp") == "jxl"
    assert render._negotiate(parse_options([]), "image/avif,image/*") == "avif"
    assert render._negotiate(parse_options([("format", "jxl")]), "") == "jxl"


def test_a_cached_render_is_served_with_the_type_its_bytes_are(tmp_path: Any) -> None:
    import io

    import imagecodecs
    import numpy as np
    from PIL import Image

    pixels = np.zeros((8, 8, 3), np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "AVIF")
    assert render._media_type(out.getvalue()) == "image/avif"
    assert render._media_type(bytes(imagecodecs.jpegxl_encode(pixels))) == "image/jxl"
    assert render._media_type(b"nothing known") == "application/octet-stream"
