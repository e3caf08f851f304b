"""The render pipeline on generated images: geometry, each step, formats, determinism."""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from PIL import Image

from imgpipe.domain.media import ImageFormat, Limits
from imgpipe.domain.render_options import RenderOptions, parse_options
from imgpipe.engine import faces
from imgpipe.engine.plan import plan
from imgpipe.engine.probe import probe
from imgpipe.engine.render import render
from imgpipe.engine.runner import Output

LIMITS = Limits(max_upload_bytes=50 << 20, max_pixels=268_435_456, max_frames=500)
RED, GREEN, BLUE, YELLOW = (220, 30, 30), (30, 200, 40), (30, 40, 220), (240, 220, 30)


def opts(query: str) -> RenderOptions:
    return parse_options(parse_qsl(query))


def quadrants(tmp_path: Path, size: tuple[int, int] = (800, 600)) -> Path:
    """Red, green / blue, yellow quadrants: orientation is visible after any transform."""
    width, height = size
    image = Image.new("RGB", size)
    for box, colour in (
        ((0, 0, width // 2, height // 2), RED),
        ((width // 2, 0, width, height // 2), GREEN),
        ((0, height // 2, width // 2, height), BLUE),
        ((width // 2, height // 2, width, height), YELLOW),
    ):
        image.paste(colour, box)
    path = tmp_path / "quadrants.png"
    image.save(path)
    return path


def run(path: Path, query: str, fmt: ImageFormat | None = ImageFormat.PNG) -> Output:
    return render(path, probe(path, LIMITS), opts(query), fmt)


def pixels(result: Output) -> Image.Image:
    return Image.open(io.BytesIO(result.data)).convert("RGBA")


def at(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    """The RGBA value at ``xy`` of an image ``pixels`` opened."""
    value = image.getpixel(xy)
    assert isinstance(value, tuple), value
    return value


def near(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 12) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=False))


def test_sizes_match_the_plan(tmp_path: Path) -> None:
    path = quadrants(tmp_path)
    for query in ("w=400&h=400&fit=cover", "w=400&h=400&fit=contain", "w=300&h=500&fit=fill"):
        result = run(path, query)
        assert (result.width, result.height) == plan(opts(query), (800, 600)).output
        assert pixels(result).size == (result.width, result.height)


def test_rotate_and_flip_move_the_quadrants(tmp_path: Path) -> None:
    path = quadrants(tmp_path)
    rotated = pixels(run(path, "w=400&rotate=90"))  # clockwise: blue comes to the top left
    assert rotated.size == (400, 533) or rotated.size == (400, 534)
    assert near(at(rotated, (20, 20)), BLUE)
    flipped = pixels(run(path, "w=400&flip=h"))
    assert near(at(flipped, (20, 20)), GREEN)
    both = pixels(run(path, "w=400&flip=hv"))
    assert near(at(both, (20, 20)), YELLOW)


def test_focal_point_and_centre_crops(tmp_path: Path) -> None:
    path = quadrants(tmp_path)
    left = run(path, "w=200&h=300&fit=cover&fp=0,0.5")
    assert left.crop_window == (0, 0, 200, 300)
    assert near(at(pixels(left), (100, 50)), RED)
    right = run(path, "w=200&h=300&fit=cover&fp=1,0.5")
    assert near(at(pixels(right), (100, 50)), GREEN)
    centre = run(path, "w=200&h=300&fit=cover")
    assert centre.crop_window == (100, 0, 200, 300)


def test_face_crop_without_a_face_falls_back_to_attention(tmp_path: Path) -> None:
    path = quadrants(tmp_path)
    face = run(path, "w=200&h=200&fit=cover&crop=face")
    attention = run(path, "w=200&h=200&fit=cover&crop=attention")
    assert face.faces == ()
    assert face.data == attention.data


def test_face_window_keeps_every_face_when_they_fit() -> None:
    boxes = [(600, 100, 80, 80), (700, 300, 60, 60)]
    left, top = faces.window_around(boxes, (1000, 800), (400, 400))
    for x, y, w, h in boxes:
        assert left <= x and x + w <= left + 400 and top <= y and y + h <= top + 400
    # Too far apart for the window: the largest face is kept whole.
    apart = [(10, 10, 100, 100), (900, 700, 50, 50)]
    left, top = faces.window_around(apart, (1000, 800), (300, 300))
    assert left <= 10 and left + 300 >= 110 and top <= 10


def test_filters_change_pixels_and_gray_has_no_colour(tmp_path: Path) -> None:
    path = quadrants(tmp_path)
    plain = pixels(run(path, "w=200"))
    grey = pixels(run(path, "w=200&gray=1"))
    r, g, b, _ = at(grey, (20, 20))
    assert abs(r - g) <= 2 and abs(g - b) <= 2
    brighter = pixels(run(path, "w=200&bri=50"))
    assert sum(at(brighter, (20, 20))[:3]) > sum(at(plain, (20, 20))[:3]) + 100
    flat = pixels(run(path, "w=200&con=-100"))
    assert near(at(flat, (20, 20)), (128, 128, 128, 255), 2)
    blurred = pixels(run(path, "w=200&blur=5"))
    assert at(blurred, (100, 75)) != at(plain, (100, 75))  # the quadrant edges
    assert run(path, "w=200&sharpen=1").data != run(path, "w=200").data


def test_contain_pads_with_white_or_transparency(tmp_path: Path) -> None:
    path = quadrants(tmp_path)
    padded = pixels(run(path, "w=400&h=400&fit=contain"))
    assert near(at(padded, (200, 5)), (255, 255, 255, 255), 0)
    rgba = tmp_path / "alpha.png"
    Image.new("RGBA", (400, 300), (10, 20, 30, 255)).save(rgba)
    clear = pixels(render(rgba, probe(rgba, LIMITS), opts("w=400&h=400&fit=contain"), None))
    assert at(clear, (200, 5))[3] == 0


def test_legacy_format_is_png_only_where_alpha_matters(tmp_path: Path) -> None:
    opaque = tmp_path / "opaque.png"
    Image.new("RGBA", (100, 100), (10, 20, 30, 255)).save(opaque)
    assert render(opaque, probe(opaque, LIMITS), opts("w=50"), None).format is ImageFormat.JPEG
    clear = tmp_path / "clear.png"
    Image.new("RGBA", (100, 100), (10, 20, 30, 100)).save(clear)
    assert render(clear, probe(clear, LIMITS), opts("w=50"), None).format is ImageFormat.PNG


def test_watermark_is_placed_scaled_and_blended(tmp_path: Path) -> None:
    path = quadrants(tmp_path)
    mark = tmp_path / "logo.png"
    Image.new("RGBA", (400, 400), (255, 255, 255, 255)).save(mark)
    result = render(path, probe(path, LIMITS), opts("w=400&wm=logo,se,1"), ImageFormat.PNG, mark)
    out = pixels(result)  # 400x300: the mark fits 25% of it (75x75) with an 8 px margin
    assert near(at(out, (400 - 8 - 30, 300 - 8 - 30)), (255, 255, 255, 255), 2)
    assert near(at(out, (400 - 8 - 80, 300 - 8 - 30)), YELLOW)
    half = render(path, probe(path, LIMITS), opts("w=400&wm=logo,nw,0.5"), ImageFormat.PNG, mark)
    r, g, b, _ = at(pixels(half), (40, 40))
    assert near((r, g, b), ((220 + 255) // 2, (30 + 255) // 2, (30 + 255) // 2), 6)


@pytest.mark.parametrize("fmt", [ImageFormat.WEBP, ImageFormat.AVIF, ImageFormat.JPEG])
def test_output_is_deterministic_and_metadata_free(tmp_path: Path, fmt: ImageFormat) -> None:
    path = quadrants(tmp_path, (640, 480))
    first = run(path, "w=200&h=200&fit=cover&crop=entropy&sharpen=1", fmt)
    second = run(path, "w=200&h=200&fit=cover&crop=entropy&sharpen=1", fmt)
    assert first.data == second.data
    decoded = Image.open(io.BytesIO(first.data))
    assert decoded.format == {"webp": "WEBP", "avif": "AVIF", "jpeg": "JPEG"}[fmt.value]
    assert not decoded.info.get("exif")


def quadrants_jpeg(tmp_path: Path, size: tuple[int, int], orientation: int = 1) -> Path:
    """The quadrants as a JPEG, stored sideways for ``orientation`` 6 (viewers turn it)."""
    upright = Image.open(quadrants(tmp_path, size)).convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90) if orientation == 6 else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"quadrants-{orientation}.jpg"
    stored.save(path, "JPEG", quality=92, exif=exif.tobytes())
    return path


@pytest.mark.parametrize(
    ("source", "size", "shrink"),
    [
        ((3264, 2448), (800, 600), 4),  # 4.08x: libvips' thumbnail would load at 1/2
        ((6000, 4000), (800, 533), 4),  # 7.5x
        ((6400, 4800), (800, 600), 8),
        ((1600, 1200), (900, 675), 1),  # under 2x: a full-size load
        ((2448, 3264), (600, 800), 4),
    ],
)
def test_jpeg_shrink_on_load_goes_to_the_largest_factor_at_or_above_the_size(
    source: tuple[int, int], size: tuple[int, int], shrink: int
) -> None:
    from imgpipe.domain.media import ProbeResult
    from imgpipe.engine.steps.decode import jpeg_shrink

    assert jpeg_shrink(ProbeResult(ImageFormat.JPEG, *source), size) == shrink
    assert jpeg_shrink(ProbeResult(ImageFormat.PNG, *source), size) == 1
    sideways = ProbeResult(ImageFormat.JPEG, source[1], source[0], orientation=6)
    assert jpeg_shrink(sideways, size) == shrink  # measured upright


def test_renders_scale_jpegs_while_decoding_and_stay_upright(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyvips

    loads: list[object] = []
    jpegload = pyvips.Image.jpegload

    def spy(filename: str, **options: object) -> object:
        loads.append(options.get("shrink", 1))
        return jpegload(filename, **options)

    monkeypatch.setattr(pyvips.Image, "jpegload", spy)
    path = quadrants_jpeg(tmp_path, (1600, 1200), orientation=6)
    result = run(path, "w=400", ImageFormat.PNG)
    assert loads == [4]  # 1600 -> 400: libjpeg decodes at 1/4, no resize left to do
    assert (result.width, result.height) == (400, 300)
    out = pixels(result)
    for xy, colour in (((20, 20), RED), ((380, 20), GREEN), ((20, 280), BLUE)):
        assert near(at(out, xy), colour), (xy, at(out, xy))


def test_profile_decoding_keeps_libvips_own_shrink(tmp_path: Path) -> None:
    """Variants must stay byte-identical: only renders opt in to the fast shrink."""
    from imgpipe.engine.steps.decode import decode

    path = quadrants_jpeg(tmp_path, (1600, 1200))
    facts = probe(path, LIMITS)
    default = decode(path, facts, (390, 293), all_frames=False)
    fast = decode(path, facts, (390, 293), all_frames=False, fast_shrink=True)
    assert (default.width, default.height) == (fast.width, fast.height) == (390, 293)
    assert default.write_to_memory() != fast.write_to_memory()  # two different decodes
