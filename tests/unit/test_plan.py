"""The one planner: exact sizes from options and the source's size, never an upscale by a
fit, cover that keeps the box's shape, regions and rotations, and the steps in one order."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from imgpipe.domain.profiles import ProfileSet
from imgpipe.domain.render_options import BadOption, RenderOptions, parse_options
from imgpipe.engine.plan import STEP_ORDER, base_size, plan

BUILTIN = ProfileSet.builtin().profiles
COVER, MEDIUM, LARGE = (BUILTIN[n].options for n in ("thumbnail", "medium", "large"))


def opts(query: str) -> RenderOptions:
    return parse_options(parse_qsl(query))


@pytest.mark.parametrize(
    ("source", "options", "resized", "cropped"),
    [
        ((4000, 3000), MEDIUM, (800, 600), (800, 600)),
        ((6000, 4000), MEDIUM, (800, 533), (800, 533)),
        ((3000, 4000), LARGE, (810, 1080), (810, 1080)),
        ((4000, 3000), COVER, (200, 150), (150, 150)),
        ((3000, 4000), COVER, (150, 200), (150, 150)),
        ((40, 30), MEDIUM, (40, 30), (40, 30)),
        # cover from a smaller source keeps the box's shape at the largest size it can
        ((150, 103), COVER, (150, 103), (103, 103)),
        ((40, 30), COVER, (40, 30), (30, 30)),
        ((1000, 100), COVER, (1000, 100), (100, 100)),
    ],
)
def test_profile_geometry(
    source: tuple[int, int],
    options: RenderOptions,
    resized: tuple[int, int],
    cropped: tuple[int, int],
) -> None:
    planned = plan(options, source)
    assert planned.resized == resized
    assert planned.cropped == planned.output == cropped


def test_undersize_keep_is_the_old_cover_rule() -> None:
    assert plan(opts("w=150&h=150&fit=cover&undersize=keep"), (150, 103)).cropped == (150, 103)
    assert plan(opts("w=400&h=300&fit=cover"), (200, 300)).cropped == (200, 150)


def test_never_upscales_by_a_fit() -> None:
    for options in (COVER, MEDIUM, LARGE, opts("w=500&h=500&fit=contain")):
        planned = plan(options, (90, 70))
        assert planned.resized[0] <= 90 and planned.resized[1] <= 70


@pytest.mark.parametrize(
    ("query", "resized", "output"),
    [
        ("", (800, 600), (800, 600)),
        ("w=400", (400, 300), (400, 300)),
        ("h=150", (200, 150), (200, 150)),
        ("w=400&h=400", (400, 300), (400, 300)),
        ("w=400&h=400&fit=cover", (533, 400), (400, 400)),
        ("w=400&h=400&fit=contain", (400, 300), (400, 400)),
        ("w=300&h=500&fit=fill", (300, 500), (300, 500)),
        ("w=300&rotate=90", (400, 300), (300, 400)),
    ],
)
def test_render_geometry(query: str, resized: tuple[int, int], output: tuple[int, int]) -> None:
    planned = plan(opts(query), (800, 600))
    assert planned.resized == resized  # before rotation
    assert planned.output == output


def test_any_angle_plans_the_bounding_box_inside_the_box() -> None:
    planned = plan(opts("w=400&h=400&rotate=45"), (800, 600))
    assert max(planned.rotated) == 400  # the turned bounding box fits the box
    assert planned.output == planned.rotated
    assert planned.resized[0] / planned.resized[1] == pytest.approx(800 / 600, rel=0.02)


def test_a_region_is_cut_from_the_decode_at_its_scale() -> None:
    planned = plan(opts("region=1000,500,2000,1000&w=400"), (4000, 3000))
    assert planned.resized == (400, 200)
    assert planned.decode == (800, 600)  # the whole source at the region's scale
    assert planned.region == (200, 100, 400, 200)
    assert planned.steps[:3] == ("decode", "region", "resize")


def test_a_region_is_clipped_to_the_image_and_refused_outside_it() -> None:
    assert plan(opts("region=3000,2000,5000,5000"), (4000, 3000)).resized == (1000, 1000)
    with pytest.raises(BadOption, match="region"):
        plan(opts("region=5000,0,10,10"), (4000, 3000))


def test_steps_run_in_one_order_whatever_order_the_query_had() -> None:
    a = plan(opts("gray=1&blur=2&rotate=90&w=300&h=300&fit=contain&flip=h"), (800, 600))
    b = plan(opts("flip=h&fit=contain&h=300&w=300&rotate=90&blur=2&gray=1"), (800, 600))
    assert a.steps == b.steps
    assert list(a.steps) == sorted(a.steps, key=STEP_ORDER.index)
    assert {"rotate", "flip", "blur", "gray", "pad"} <= set(a.steps)


@pytest.mark.parametrize(
    ("source", "base"),
    [((4032, 3024), (1440, 1080)), ((3024, 4032), (810, 1080)), ((800, 600), (800, 600))],
)
def test_one_decode_serves_every_builtin(source: tuple[int, int], base: tuple[int, int]) -> None:
    assert base_size(source) == base
