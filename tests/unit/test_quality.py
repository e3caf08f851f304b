"""metadata.quality through the real pipeline: more blur, more clipping or a lower JPEG
quality each give a lower score, on copies of a photo-like scene made here (and of the
corpus photos, where the corpus is present)."""

from __future__ import annotations

import functools
import itertools
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import photolike
from imgpipe.domain.media import Limits
from imgpipe.domain.profiles import BUILTIN_PROFILES
from imgpipe.engine.pipeline import render_variants
from imgpipe.engine.probe import probe
from imgpipe.engine.quality import jpeg_quality

LIMITS = Limits(max_upload_bytes=50 << 20, max_pixels=268_435_456, max_frames=500)
THUMBNAIL = BUILTIN_PROFILES[0].variants()[0]
CORPUS = Path(os.environ.get("IMGPIPE_TEST_PHOTOS", "/work/shared/corpus/photos"))


@functools.cache
def _scene(seed: int) -> np.ndarray:
    return photolike.scene(seed)


def _quality(tmp_path: Path, data: bytes, suffix: str) -> dict[str, Any]:
    path = tmp_path / f"in-{abs(hash(data))}{suffix}"
    path.write_bytes(data)
    analysis = render_variants(path, probe(path, LIMITS), [THUMBNAIL]).analysis
    quality: dict[str, Any] = analysis["quality"]
    return quality


def _blurred(rgb: np.ndarray, sigma: float) -> np.ndarray:
    image = photolike.to_vips(rgb)
    image = image.gaussblur(sigma) if sigma else image
    out = np.ndarray(buffer=image.cast("uchar").write_to_memory(), dtype=np.uint8, shape=rgb.shape)
    return out.copy()


def _brightened(rgb: np.ndarray, gain: float, offset: float = 0.0) -> np.ndarray:
    return np.clip(rgb.astype(np.float64) * gain + offset, 0, 255).astype(np.uint8)


def _strictly_falling(scores: list[int], what: str) -> None:
    assert all(a > b for a, b in itertools.pairwise(scores)), f"{what}: {scores}"


@pytest.mark.parametrize("seed", [1, 2])
def test_more_blur_gives_a_lower_score(tmp_path: Path, seed: int) -> None:
    scene = _scene(seed)
    results = [
        _quality(tmp_path, photolike.encode(_blurred(scene, s)), ".png") for s in (0, 1.5, 4)
    ]
    _strictly_falling([r["score"] for r in results], "score by blur 0, 1.5, 4")
    _strictly_falling([r["sharpness"] for r in results], "sharpness by blur")
    assert all(r["jpeg_quality"] is None for r in results)  # PNG: no quantisation tables


@pytest.mark.parametrize("seed", [1, 2])
def test_more_clipping_gives_a_lower_score(tmp_path: Path, seed: int) -> None:
    scene = _scene(seed)
    results = [
        _quality(tmp_path, photolike.encode(_brightened(scene, g)), ".png") for g in (1.0, 1.6, 2.4)
    ]
    _strictly_falling([r["score"] for r in results], "score by gain 1.0, 1.6, 2.4")
    _strictly_falling([r["exposure"] for r in results], "exposure by gain")
    highlights = [r["clipped_highlights"] for r in results]
    assert highlights == sorted(highlights) and highlights[-1] > 0.2, highlights
    # Underexposed: the ground's shadows crushed to black.
    crushed = [
        _quality(tmp_path, photolike.encode(_brightened(scene, 0.6, -o)), ".png") for o in (40, 70)
    ]
    assert 0.05 < crushed[0]["clipped_shadows"] < crushed[1]["clipped_shadows"], crushed
    _strictly_falling([results[0]["score"]] + [r["score"] for r in crushed], "score by crush")


@pytest.mark.parametrize("seed", [1, 2])
def test_a_lower_jpeg_quality_gives_a_lower_score(tmp_path: Path, seed: int) -> None:
    scene = _scene(seed)
    qualities = (95, 70, 40, 15)
    results = [_quality(tmp_path, photolike.encode(scene, ".jpg", Q=q), ".jpg") for q in qualities]
    assert [r["jpeg_quality"] for r in results] == list(qualities)
    _strictly_falling([r["score"] for r in results], f"score by JPEG quality {qualities}")


def test_the_summary_has_every_part_in_range(tmp_path: Path) -> None:
    quality = _quality(tmp_path, photolike.encode(_scene(1), ".jpg", Q=88), ".jpg")
    assert 0 <= quality["score"] <= 100 and isinstance(quality["score"], int)
    for part in ("sharpness", "exposure", "clipped_highlights", "clipped_shadows"):
        assert 0.0 <= quality[part] <= 1.0, (part, quality)
    assert 0.0 <= quality["noise"] < 20, quality
    assert quality["jpeg_quality"] == 88


@pytest.mark.parametrize("encoder", ["pillow", "libvips"])
@pytest.mark.parametrize("q", [100, 92, 75, 50, 23, 5])
def test_jpeg_quality_is_read_from_the_quantisation_tables(
    tmp_path: Path, encoder: str, q: int
) -> None:
    path = tmp_path / "q.jpg"
    scene = _scene(1)[:200, :300]
    if encoder == "pillow":
        Image.fromarray(scene).save(path, quality=q)
    else:
        path.write_bytes(photolike.encode(scene, ".jpg", Q=q))
    assert jpeg_quality(path) == q


def test_a_greyscale_jpeg_has_a_quality_too(tmp_path: Path) -> None:
    path = tmp_path / "grey.jpg"
    Image.fromarray(_scene(2)[:, :, 1]).save(path, quality=61)
    assert jpeg_quality(path) == 61


def test_a_file_that_is_not_a_jpeg_has_none(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(photolike.encode(_scene(1)[:50, :50]))
    assert jpeg_quality(path) is None


@pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus photos not present")
@pytest.mark.slow
def test_on_the_corpus_photos_blur_clipping_and_compression_each_lower_the_score(
    tmp_path: Path,
) -> None:
    import pyvips

    photos = sorted(p for p in CORPUS.glob("*.jpg"))[:4]
    for photo in photos:
        base = pyvips.Image.thumbnail(str(photo), 1600).extract_band(0, n=3)
        rgb = np.ndarray(
            buffer=base.write_to_memory(), dtype=np.uint8, shape=(base.height, base.width, 3)
        ).copy()
        clean = _quality(tmp_path, photolike.encode(rgb), ".png")["score"]
        blurred = _quality(tmp_path, photolike.encode(_blurred(rgb, 3)), ".png")["score"]
        clipped = _quality(tmp_path, photolike.encode(_brightened(rgb, 2.2)), ".png")["score"]
        best = _quality(tmp_path, photolike.encode(rgb, ".jpg", Q=95), ".jpg")["score"]
        worst = _quality(tmp_path, photolike.encode(rgb, ".jpg", Q=20), ".jpg")["score"]
        assert blurred < clean and clipped < clean and worst < best, (
            photo.name,
            clean,
            blurred,
            clipped,
            best,
            worst,
        )


def test_a_huge_jpeg_header_is_read_without_pillows_bomb_guard(tmp_path: Path) -> None:
    # 30000 x 30000 by its header (900 Mpx, past Pillow's own limit): only the header is
    # read, so the quality still comes out and nothing is decoded.
    data = bytearray(photolike.encode(_scene(1)[:64, :64], ".jpg", Q=66))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (30000).to_bytes(2, "big") * 2
    path = tmp_path / "huge.jpg"
    path.write_bytes(bytes(data))
    assert jpeg_quality(path) == 66
