"""Every render option works the same in a profile and in a render URL: one table of
options, each run both ways through the one engine, each checked on the pixels."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from PIL import Image

from imgpipe.domain.media import ImageFormat, Limits
from imgpipe.domain.profiles import parse_profile
from imgpipe.domain.render_options import parse_options
from imgpipe.engine.pipeline import Rendered, render_variants
from imgpipe.engine.probe import probe
from imgpipe.engine.render import render

LIMITS = Limits(max_upload_bytes=50 << 20, max_pixels=268_435_456, max_frames=500)
RED, GREEN, BLUE, YELLOW = (220, 30, 30), (30, 200, 40), (30, 40, 220), (240, 220, 30)
Check = Callable[[Image.Image], bool]


def near(actual: object, expected: tuple[int, ...], tolerance: int = 14) -> bool:
    assert isinstance(actual, tuple)
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=False))


def size(expected: tuple[int, int]) -> Check:
    return lambda image: image.size == expected


CASES: list[tuple[str, Check]] = [
    ("w=400", size((400, 300))),
    ("w=300&h=300&fit=cover", size((300, 300))),
    ("w=300&h=500&fit=fill", size((300, 500))),
    (
        "w=300&h=300&fit=contain&bg=ff00ff",
        lambda im: im.size == (300, 300) and near(im.getpixel((150, 5)), (255, 0, 255)),
    ),
    (
        "region=0,0,400,300",
        lambda im: im.size == (400, 300) and near(im.getpixel((200, 150)), RED),
    ),
    (
        "region=400,300,400,300&w=100",
        lambda im: im.size == (100, 75) and near(im.getpixel((50, 37)), YELLOW),
    ),
    (
        "w=300&rotate=90",  # clockwise: blue comes to the top left
        lambda im: im.size == (300, 400) and near(im.getpixel((20, 20)), BLUE),
    ),
    (
        "rotate=30&bg=00ff00",
        lambda im: im.size[0] > 800 and near(im.getpixel((2, 2)), (0, 255, 0)),
    ),
    ("flip=h", lambda im: near(im.getpixel((20, 20)), GREEN)),
    ("flip=v", lambda im: near(im.getpixel((20, 20)), BLUE)),
    ("gray=1", lambda im: len(set(im.convert("RGB").getpixel((20, 20)))) == 1),  # type: ignore[arg-type]
    ("bri=40", lambda im: im.getpixel((20, 20))[1] > RED[1] + 60),  # type: ignore[index]
    ("con=-100", lambda im: near(im.getpixel((20, 20)), (128, 128, 128), 3)),
    (
        "blur=8",  # the red/green edge at x=400 is smeared
        lambda im: (
            not near(im.getpixel((400, 20)), RED, 40)
            and not near(im.getpixel((400, 20)), GREEN, 40)
        ),
    ),
    ("sharpen=2", size((800, 600))),
    (
        "w=200&h=600&fit=cover&fp=1,0",  # the focal point holds the right edge
        lambda im: im.size == (200, 600) and near(im.getpixel((190, 20)), GREEN),
    ),
    ("w=200&h=200&fit=cover&crop=entropy", size((200, 200))),
    ("q=auto", size((800, 600))),
    (
        "wm=mark,nw,1",  # an opaque white mark in the top left corner
        lambda im: near(im.getpixel((30, 30)), (255, 255, 255), 3),
    ),
]


def quadrants(tmp_path: Path) -> Path:
    image = Image.new("RGB", (800, 600))
    for box, colour in (
        ((0, 0, 400, 300), RED),
        ((400, 0, 800, 300), GREEN),
        ((0, 300, 400, 600), BLUE),
        ((400, 300, 800, 600), YELLOW),
    ):
        image.paste(colour, box)
    path = tmp_path / "quadrants.png"
    image.save(path)
    (tmp_path / "marks").mkdir()
    Image.new("RGBA", (400, 400), (255, 255, 255, 255)).save(tmp_path / "marks" / "mark.png")
    return path


def as_profile_table(query: str) -> dict[str, object]:
    table: dict[str, object] = {"width": 10_000, "height": 10_000, "formats": ["png"]}
    for key, value in parse_qsl(query):
        table[{"w": "width", "h": "height"}.get(key, key)] = (
            int(value) if key in ("w", "h") else value
        )
    if "fit" not in table and ("w" in query or "h" in query):
        table.setdefault("width", 10_000)
    return table


@pytest.mark.parametrize(("query", "check"), CASES, ids=[q for q, _ in CASES])
def test_an_option_does_the_same_in_a_render_and_in_a_profile(
    tmp_path: Path, query: str, check: Check
) -> None:
    path = quadrants(tmp_path)
    facts = probe(path, LIMITS)
    options = parse_options(parse_qsl(query))
    mark = tmp_path / "marks" / "mark.png" if options.watermark else None
    rendered = render(path, facts, options, ImageFormat.PNG, mark)
    by_render = Image.open(io.BytesIO(rendered.data)).convert("RGB")
    assert check(by_render), f"render {query}: {by_render.size}"

    profile = parse_profile("p", as_profile_table(query))
    result = render_variants(path, facts, profile.variants(), watermarks_dir=tmp_path / "marks")
    variant = result.outcomes["p"]
    assert isinstance(variant, Rendered), variant
    by_profile = Image.open(io.BytesIO(variant.data)).convert("RGB")
    assert check(by_profile), f"profile {query}: {by_profile.size}"
    assert by_profile.size == by_render.size


def test_a_profile_naming_a_missing_watermark_fails_that_variant(tmp_path: Path) -> None:
    path = quadrants(tmp_path)
    profile = parse_profile("p", {"width": 100, "height": 100, "wm": "nosuch"})
    outcome = render_variants(path, probe(path, LIMITS), profile.variants()).outcomes["p"]
    assert getattr(outcome, "code", None) == "bad_option"


def test_animated_keep_is_refused_for_a_format_that_cannot_hold_it() -> None:
    with pytest.raises(ValueError, match="avif"):
        parse_profile(
            "a", {"width": 10, "height": 10, "formats": ["webp", "avif"], "animated": "keep"}
        )


def _animation(path: Path, quality: int) -> Path:
    frames = [Image.effect_noise((240, 180), 30 + 10 * i).convert("RGB") for i in range(6)]
    frames[0].save(
        path, "WEBP", save_all=True, append_images=frames[1:], duration=90, quality=quality
    )
    return path


def test_an_animated_variant_at_its_own_size_is_never_larger_than_the_original(
    tmp_path: Path,
) -> None:
    path = _animation(tmp_path / "anim.webp", quality=40)  # compressed harder than q85
    facts = probe(path, LIMITS)
    profile = parse_profile("m", {"width": 800, "height": 600})
    out = render_variants(path, facts, profile.variants()).outcomes["m"]
    assert isinstance(out, Rendered), out
    assert (out.width, out.height, out.frames) == (240, 180, 6)
    assert len(out.data) <= path.stat().st_size
    with Image.open(io.BytesIO(out.data)) as decoded:
        assert getattr(decoded, "n_frames", 1) == 6


def test_an_animated_source_in_avif_says_it_has_one_frame(tmp_path: Path) -> None:
    path = _animation(tmp_path / "anim.webp", quality=80)
    profile = parse_profile("m", {"width": 800, "height": 600, "formats": ["webp", "avif"]})
    outcomes = render_variants(path, probe(path, LIMITS), profile.variants()).outcomes
    webp, avif = outcomes["m"], outcomes["m.avif"]
    assert isinstance(webp, Rendered) and isinstance(avif, Rendered)
    assert (webp.frames, avif.frames) == (6, 1)
