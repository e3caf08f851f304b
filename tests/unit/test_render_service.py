"""The render use case's decisions that need no server: signing mode and negotiation."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from imgpipe.api.http_headers import accepted_types, entity_tags
from imgpipe.domain.errors import BadSignature
from imgpipe.domain.media import ImageFormat
from imgpipe.domain.render_options import RenderConfig, parse_options
from imgpipe.services import render
from imgpipe.services.render_runtime import RenderRuntime


def deps(allow_unsigned: bool) -> Any:
    return SimpleNamespace(
        signing_key=b"k",
        render=RenderConfig(allow_unsigned=allow_unsigned),
        render_runtime=RenderRuntime(),
    )


def request(pairs: list[tuple[str, str]]) -> render.RenderRequest:
    return render.RenderRequest("img_a", "/v1/render/img_a", pairs, None)


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
    assert render._negotiate(parse_options([]), accepted_types(accept)) == expected


def test_an_explicit_format_ignores_accept() -> None:
    assert (
        render._negotiate(parse_options([("format", "png")]), accepted_types("image/avif")) == "png"
    )


def test_jpeg_xl_only_where_accept_names_it() -> None:
    # The jxl extra is part of the test install (Makefile), so the server can write it.
    jxl_first = accepted_types("image/jxl,image/avif,image/webp")
    assert render._negotiate(parse_options([]), jxl_first) == "jxl"
    assert render._negotiate(parse_options([]), accepted_types("image/avif,image/*")) == "avif"
    assert render._negotiate(parse_options([("format", "jxl")]), frozenset()) == "jxl"


def test_if_none_match_compares_weakly_and_lists() -> None:
    assert entity_tags('W/"a", "b"') == {'"a"', '"b"'}
    assert entity_tags(None) == entity_tags("") == frozenset()


def test_a_render_is_served_with_the_type_its_key_names() -> None:
    """An explicit or negotiated format is the key's; only ``legacy`` (JPEG, or PNG
    where alpha matters) is told apart, between those two, by the output's signature."""
    from imgpipe.engine.render import output_format

    assert output_format(ImageFormat.AVIF, b"\xff\xd8\xff") is ImageFormat.AVIF
    assert output_format(ImageFormat.JXL, b"") is ImageFormat.JXL
    assert output_format(None, b"\x89PNG\r\n\x1a\n....") is ImageFormat.PNG
    assert output_format(None, b"\xff\xd8\xff\xe0") is ImageFormat.JPEG
