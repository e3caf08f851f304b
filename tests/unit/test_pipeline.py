"""The engine on generated images: one decode, exact sizes, the SPEC §5 rules."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import pyvips
from PIL import Image

from imgpipe.domain.errors import CorruptImage, ProcessTimeout, TooManyPixels
from imgpipe.domain.media import Limits
from imgpipe.domain.profiles import Profile, ProfileSet, VariantSpec, parse_profile
from imgpipe.domain.render_options import Crop
from imgpipe.engine.deadline import Deadline
from imgpipe.engine.pipeline import Rendered, render_variants
from imgpipe.engine.probe import probe
from imgpipe.engine.steps.crop import crop_window, scale_boxes

LIMITS = Limits(max_upload_bytes=50 << 20, max_pixels=268_435_456, max_frames=500)
BUILTIN = [s for p in ProfileSet.builtin().profiles.values() for s in p.variants()]


def profile(name: str, width: int, height: int, **table: object) -> Profile:
    return parse_profile(name, {"width": width, "height": height, **table})


def _photo(tmp_path: Path, size: tuple[int, int] = (1600, 1200)) -> Path:
    path = tmp_path / "photo.jpg"
    noise = Image.effect_noise(size, 40).convert("RGB")
    gradient = Image.linear_gradient("L").resize(size).convert("RGB")
    Image.blend(noise, gradient, 0.5).save(path, quality=90)
    return path


def _rendered(outcome: object) -> Rendered:
    assert isinstance(outcome, Rendered), outcome
    return outcome


def test_every_variant_has_the_planned_size_and_is_webp(tmp_path: Path) -> None:
    path = _photo(tmp_path)
    result = render_variants(path, probe(path, LIMITS), BUILTIN)
    sizes = {name: (_rendered(o).width, _rendered(o).height) for name, o in result.outcomes.items()}
    assert sizes == {"thumbnail": (150, 150), "medium": (800, 600), "large": (1440, 1080)}
    for outcome in result.outcomes.values():
        decoded = Image.open(io.BytesIO(_rendered(outcome).data))
        assert decoded.format == "WEBP"
        assert decoded.size == (_rendered(outcome).width, _rendered(outcome).height)


def test_the_batch_can_skip_the_analysis_and_get_the_same_variants(tmp_path: Path) -> None:
    path = _photo(tmp_path)
    facts = probe(path, LIMITS)
    analysed = render_variants(path, facts, BUILTIN)
    variants_only = render_variants(path, facts, BUILTIN, analyze=False)
    assert analysed.analysis["phash"] and analysed.analysis["palette"]
    assert variants_only.analysis == {}
    assert {k: _rendered(v).data for k, v in variants_only.outcomes.items()} == {
        k: _rendered(v).data for k, v in analysed.outcomes.items()
    }


def test_output_is_byte_identical_across_runs(tmp_path: Path) -> None:
    path = _photo(tmp_path)
    facts = probe(path, LIMITS)
    first = render_variants(path, facts, BUILTIN).outcomes
    second = render_variants(path, facts, BUILTIN).outcomes
    assert {k: _rendered(v).data for k, v in first.items()} == {
        k: _rendered(v).data for k, v in second.items()
    }


def test_a_variant_does_not_depend_on_which_others_are_rendered(tmp_path: Path) -> None:
    path = _photo(tmp_path, (2400, 1800))
    facts = probe(path, LIMITS)
    together = render_variants(path, facts, BUILTIN).outcomes["thumbnail"]
    alone = render_variants(path, facts, [BUILTIN[0]]).outcomes["thumbnail"]
    assert _rendered(alone).data == _rendered(together).data


def test_a_profile_larger_than_the_base_gets_full_detail(tmp_path: Path) -> None:
    path = _photo(tmp_path, (3000, 2000))
    spec = profile("xl", 2800, 2800).variants()
    out = _rendered(render_variants(path, probe(path, LIMITS), spec).outcomes["xl"])
    assert (out.width, out.height) == (2800, 1867)


def test_analysis_describes_the_picture(tmp_path: Path) -> None:
    path = tmp_path / "red.png"
    Image.new("RGB", (300, 200), (255, 0, 0)).save(path)
    analysis = render_variants(path, probe(path, LIMITS), BUILTIN).analysis
    assert analysis["dominant_colors"][0] == "#ff0000"
    assert len(analysis["blurhash"]) == 28  # 4x3 components
    assert len(analysis["phash"]) == 16


def test_other_formats_and_quality_auto(tmp_path: Path) -> None:
    path = tmp_path / "smooth.png"
    Image.linear_gradient("L").resize((900, 600)).convert("RGB").save(path)
    multi = profile("multi", 400, 400, fit="fit", quality="auto", formats=["jpeg", "avif", "png"])
    fixed = profile("fixed", 400, 400, quality=92, formats=["jpeg"])
    specs = multi.variants() + fixed.variants()
    result = render_variants(path, probe(path, LIMITS), specs).outcomes
    kinds = {name: Image.open(io.BytesIO(_rendered(o).data)).format for name, o in result.items()}
    assert kinds == {"multi": "JPEG", "multi.avif": "AVIF", "multi.png": "PNG", "fixed": "JPEG"}
    # "auto" finds a smaller file than a high fixed quality on a noisy photo.
    assert len(_rendered(result["multi"]).data) < len(_rendered(result["fixed"]).data)


def test_jpeg_output_flattens_alpha_onto_white(tmp_path: Path) -> None:
    path = tmp_path / "clear.png"
    Image.new("RGBA", (100, 100), (0, 0, 0, 0)).save(path)
    spec = profile("j", 100, 100, formats=["jpeg"]).variants()
    out = _rendered(render_variants(path, probe(path, LIMITS), spec).outcomes["j"])
    pixel = Image.open(io.BytesIO(out.data)).convert("RGB").getpixel((50, 50))
    assert isinstance(pixel, tuple)
    assert min(pixel) > 245


def test_animation_keeps_its_frames_and_timing(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (300, 200), c) for c in ("red", "green", "blue", "white")]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=120, loop=0)
    result = render_variants(path, probe(path, LIMITS), BUILTIN).outcomes
    thumb = _rendered(result["thumbnail"])
    assert (thumb.width, thumb.height, thumb.frames) == (150, 150, 4)
    decoded = Image.open(io.BytesIO(thumb.data))
    assert getattr(decoded, "n_frames", 1) == 4
    decoded.seek(1)
    decoded.load()
    assert decoded.info["duration"] == 120


def test_pixel_data_that_will_not_decode_fails_each_variant(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    Image.effect_noise((400, 300), 40).convert("RGB").save(path)
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") + 104
    data[start : start + 2000] = b"\x00\xff" * 1000  # garbage inside the deflate stream
    path.write_bytes(bytes(data))
    result = render_variants(path, probe(path, LIMITS), BUILTIN).outcomes
    assert all(isinstance(o, CorruptImage) for o in result.values())


def test_the_deadline_stops_work(tmp_path: Path) -> None:
    path = _photo(tmp_path)
    result = render_variants(path, probe(path, LIMITS), BUILTIN, Deadline(0)).outcomes
    assert all(isinstance(o, ProcessTimeout) for o in result.values())


@pytest.mark.parametrize("fmt", ["heic", "bmp"])
def test_formats_libvips_cannot_decode_here_go_through_the_same_pipeline(
    tmp_path: Path, fmt: str
) -> None:
    image = Image.new("RGB", (640, 480), (200, 30, 30))
    path = tmp_path / f"x.{fmt}"
    if fmt == "heic":
        import pillow_heif

        pillow_heif.register_heif_opener()
        image.save(path, format="HEIF", quality=90)
    else:
        image.save(path, format="BMP")
    result = render_variants(path, probe(path, LIMITS), BUILTIN).outcomes
    medium = pyvips.Image.new_from_buffer(_rendered(result["medium"]).data, "")
    assert (medium.width, medium.height) == (640, 480)
    r, g, b = (medium.extract_band(i).avg() for i in range(3))
    assert r > 180 and g < 60 and b < 60


def test_progressive_jpegs_have_their_own_pixel_budget(tmp_path: Path) -> None:
    image = pyvips.Image.black(400, 300).copy(interpretation="srgb") + 90
    progressive, baseline = tmp_path / "progressive.jpg", tmp_path / "baseline.jpg"
    image.jpegsave(str(progressive), interlace=True)
    image.jpegsave(str(baseline))
    limits = Limits(50 << 20, max_pixels=1_000_000, max_frames=1, max_progressive_pixels=100_000)
    assert probe(baseline, limits).progressive is False  # 120,000 pixels: within MAX_PIXELS
    with pytest.raises(TooManyPixels, match="progressive JPEG is 400x300"):
        probe(progressive, limits)
    roomy = Limits(50 << 20, max_pixels=1_000_000, max_frames=1, max_progressive_pixels=120_000)
    assert probe(progressive, roomy).progressive is True


def _face_profile(crop: Crop) -> list[VariantSpec]:
    return profile("portrait", 150, 400, fit="cover", crop=crop.value).variants()


def test_a_face_crop_without_a_face_is_the_attention_crop(tmp_path: Path) -> None:
    path = _photo(tmp_path)  # noise and a gradient: nothing a detector calls a face
    face = render_variants(path, probe(path, LIMITS), _face_profile(Crop.FACE))
    attention = render_variants(path, probe(path, LIMITS), _face_profile(Crop.ATTENTION))
    assert _rendered(face.outcomes["portrait"]).data == (
        _rendered(attention.outcomes["portrait"]).data
    )
    assert profile("p", 1, 1, crop="face").digest != profile("p", 1, 1).digest


def test_a_face_crop_keeps_the_faces_in_the_box() -> None:
    # Each pixel holds its own x, y: the cut's first pixel says where the window fell.
    coordinates = pyvips.Image.xyz(600, 400)
    far_right, low_left = (480, 100, 60, 60), (20, 300, 40, 40)
    for faces_found in ([far_right], [low_left], [far_right, low_left]):
        cut, _, _ = crop_window(coordinates, (150, 200), Crop.FACE, None, faces_found)
        left, top = (int(v) for v in cut.getpoint(0, 0))
        keep = faces_found if len(faces_found) == 1 else faces_found[:1]  # too far apart
        for x, y, w, h in keep:
            assert left <= x and x + w <= left + 150, (faces_found, left)
            assert top <= y and y + h <= top + 200, (faces_found, top)
    assert scale_boxes([far_right], 0.5) == [(240, 50, 30, 30)]
