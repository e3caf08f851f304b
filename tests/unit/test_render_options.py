"""Render options: one immutable spec and one canonical form, whatever the query order."""

from __future__ import annotations

import random

import pytest

from imgpipe.domain.errors import BadRequest
from imgpipe.domain.media import ImageFormat
from imgpipe.domain.render_options import (
    OPTION_ORDER,
    BadOption,
    Crop,
    Fit,
    Flip,
    Position,
    parse_options,
    split_render_path,
)

QUERY = [
    ("wm", "logo,nw,0.25"),
    ("gray", "1"),
    ("con", "-20"),
    ("bri", "15"),
    ("flip", "h"),
    ("rotate", "90"),
    ("sharpen", "1.5"),
    ("blur", "2"),
    ("q", "70"),
    ("format", "webp"),
    ("fp", "0.25,0.75"),
    ("fit", "cover"),
    ("h", "200"),
    ("w", "300"),
]


def test_every_option_parses_into_the_spec() -> None:
    options = parse_options(QUERY)
    assert (options.width, options.height, options.fit) == (300, 200, Fit.COVER)
    assert options.crop is Crop.FOCAL and options.focal == (0.25, 0.75)
    assert options.format is ImageFormat.WEBP and options.quality == 70
    assert (options.blur, options.sharpen, options.rotate, options.flip) == (2.0, 1.5, 90, Flip.H)
    assert (options.brightness, options.contrast, options.gray) == (15, -20, True)
    assert options.watermark is not None
    assert options.watermark.position is Position.NW and options.watermark.opacity == 0.25


@pytest.mark.parametrize("seed", range(6))
def test_canonical_form_does_not_depend_on_query_order(seed: int) -> None:
    shuffled = list(QUERY)
    random.Random(seed).shuffle(shuffled)
    assert parse_options(shuffled) == parse_options(QUERY)
    assert parse_options(shuffled).canonical() == parse_options(QUERY).canonical()
    names = [k for k, _ in parse_options(shuffled).canonical_pairs()]
    assert names == [n for n in OPTION_ORDER if n in names]


def test_defaults_are_left_out_and_spellings_are_normalised() -> None:
    options = parse_options(
        [("crop", "center"), ("fit", "inside"), ("rotate", "0"), ("blur", "1.50"), ("w", "10")]
    )
    assert options.canonical() == "w=10&blur=1.5"
    assert parse_options([("format", "jpg")]).format is ImageFormat.JPEG
    assert parse_options([]).canonical() == ""


def test_cache_digest_depends_on_options_format_and_assets() -> None:
    a = parse_options([("w", "100")])
    assert a.cache_digest("webp") == parse_options([("w", "100")]).cache_digest("webp")
    assert a.cache_digest("webp") != a.cache_digest("avif")
    assert a.cache_digest("webp") != parse_options([("w", "101")]).cache_digest("webp")
    assert a.cache_digest("webp", "wm1") != a.cache_digest("webp", "wm2")


@pytest.mark.parametrize(
    ("pairs", "option", "fragment"),
    [
        ([("w", "0")], "w", "integer from 1 to 8192"),
        ([("w", "abc")], "w", "'abc'"),
        ([("h", "99999")], "h", "8192"),
        ([("fit", "squash")], "fit", "inside, cover, contain, fill"),
        ([("crop", "middle")], "crop", "centre, attention, entropy, face"),
        ([("crop", "fp")], "crop", "centre"),
        ([("format", "gif")], "format", "auto, avif, jpeg, jxl, png, webp"),
        ([("q", "101")], "q", "1 to 100"),
        ([("blur", "0")], "blur", "0.3 to 100"),
        ([("blur", "1e3")], "blur", "number"),
        ([("sharpen", "nan")], "sharpen", "number"),
        ([("rotate", "400")], "rotate", "a number from -360 to 360"),
        ([("region", "1,2,3")], "region", "left,top,width,height"),
        ([("bg", "red")], "bg", "rrggbb"),
        ([("q", "best")], "q", "or auto"),
        ([("flip", "x")], "flip", "h, v, hv"),
        ([("bri", "-101")], "bri", "-100 to 100"),
        ([("con", "1.5")], "con", "integer"),
        ([("gray", "yes")], "gray", "1 or 0"),
        ([("fp", "2,0.5")], "fp", "between 0 and 1"),
        ([("fp", "0.5")], "fp", "x,y"),
        ([("fp", "0.5,0.5"), ("crop", "face")], "crop", "absent when fp"),
        ([("wm", "../etc/passwd")], "wm", "NAME"),
        ([("wm", "logo,middle")], "wm", "POSITION"),
        ([("wm", "logo,se,2")], "wm", "opacity"),
        ([("width", "10")], "width", "known options"),
        ([("w", "10"), ("w", "10")], "w", "at most once"),
    ],
)
def test_a_bad_option_is_named_with_what_was_expected_and_what_came(
    pairs: list[tuple[str, str]], option: str, fragment: str
) -> None:
    with pytest.raises(BadOption) as caught:
        parse_options(pairs)
    error = caught.value
    assert error.option == option
    assert error.status == 400 and error.code == "bad_option"
    assert option in error.detail and fragment in error.detail


def test_the_path_extension_sets_the_format_and_must_agree_with_the_query() -> None:
    assert split_render_path("/v1/render/img_abc.webp") == ("img_abc", ImageFormat.WEBP)
    assert split_render_path("/v1/render/img_abc.JPG") == ("img_abc", ImageFormat.JPEG)
    assert split_render_path("/v1/render/img_abc") == ("img_abc", None)
    options = parse_options([("w", "5")], ImageFormat.AVIF)
    assert options.format is ImageFormat.AVIF
    assert options.canonical() == "w=5"  # the path carries it
    assert options.cache_digest("avif") == parse_options(
        [("w", "5"), ("format", "avif")]
    ).cache_digest("avif")
    with pytest.raises(BadOption):
        parse_options([("format", "png")], ImageFormat.WEBP)
    with pytest.raises(BadOption):
        split_render_path("/v1/render/img_abc.gif")
    with pytest.raises(BadRequest):
        split_render_path("/v1/render/a/b")
