"""Output bytes are a contract: the sha256 of every profile's variant and of a table of
renders, for fixtures generated here from seeded pixels, is recorded in
``golden_outputs.json``. An engine change that alters any of them must bump the output
version (domain/options.OUTPUT_VERSION) and rewrite the file on purpose:

    IMGPIPE_WRITE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_golden_outputs.py

and say in its commit which outputs changed and why (their SSIM against the old bytes).
The hashes hold for the pinned codec builds (pyproject.toml); upgrading one is such a change.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from . import golden_engine

GOLDEN = Path(__file__).with_name("golden_outputs.json")
WRITE = os.environ.get("IMGPIPE_WRITE_GOLDEN") == "1"


def _noise_photo(size: tuple[int, int], seed: int) -> Image.Image:
    """Smooth gradients with seeded noise and a few hard edges: photo-like, deterministic."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    red = 128 + 100 * np.sin(x / width * 3.1)
    green = 128 + 100 * np.cos(y / height * 2.3)
    blue = 255 * (x + y) / (width + height)
    pixels = np.stack([red, green, blue], axis=-1) + rng.normal(0, 12, (height, width, 3))
    pixels[height // 3 : height // 2, width // 4 : width // 2] = (250, 240, 20)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _jpeg(image: Image.Image, **kwargs: object) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, **kwargs)
    return out.getvalue()


def _fixtures() -> dict[str, Callable[[], bytes]]:
    def photo() -> bytes:
        return _jpeg(_noise_photo((1600, 1200), 1))

    def portrait_exif6() -> bytes:
        exif = Image.Exif()
        exif[0x0112] = 6
        return _jpeg(_noise_photo((1200, 900), 2), exif=exif.tobytes())

    def alpha_png() -> bytes:
        rgba = _noise_photo((640, 480), 3).convert("RGBA")
        alpha = Image.linear_gradient("L").resize((640, 480))
        rgba.putalpha(alpha)
        out = io.BytesIO()
        rgba.save(out, "PNG")
        return out.getvalue()

    def small() -> bytes:
        return _jpeg(_noise_photo((150, 103), 4))

    def animated_gif() -> bytes:
        frames = [_noise_photo((200, 150), 10 + i).quantize(64) for i in range(6)]
        out = io.BytesIO()
        frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
        return out.getvalue()

    def cmyk() -> bytes:
        return _jpeg(_noise_photo((900, 700), 5).convert("CMYK"))

    return {
        "photo.jpg": photo,
        "portrait-exif6.jpg": portrait_exif6,
        "alpha.png": alpha_png,
        "small-150x103.jpg": small,
        "animated.gif": animated_gif,
        "cmyk.jpg": cmyk,
    }


PROFILES_TOML = """
[profiles.square]
width = 300
height = 300
fit = "cover"
crop = "attention"
formats = ["webp", "avif", "jpeg", "png"]

[profiles.auto]
width = 640
height = 480
quality = "auto"
formats = ["webp", "jpeg"]

[profiles.still]
width = 120
height = 120
fit = "cover"
animated = "first-frame"
"""

RENDERS = (
    "w=300&h=200&fit=cover&format=webp",
    "w=400&format=jpeg&q=70",
    "w=500&blur=2&sharpen=1&rotate=90&flip=h&bri=10&con=20&gray=1&format=png",
    "w=300&h=300&fit=contain&format=png",
    "w=200&h=200&fit=cover&crop=attention&format=webp",
    "w=200&h=300&fit=cover&fp=0.2,0.8&format=jpeg",
    "w=320&h=240&fit=fill&format=avif",
    "w=256",
)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _outputs(tmp_path: Path) -> dict[str, str]:
    profiles_file = tmp_path / "profiles.toml"
    profiles_file.write_text(PROFILES_TOML)
    hashes: dict[str, str] = {}
    for name, make in _fixtures().items():
        path = tmp_path / name
        path.write_bytes(make())
        for variant, data in golden_engine.profile_outputs(path, profiles_file).items():
            hashes[f"{name} profile {variant}"] = _sha(data)
        for query in RENDERS:
            hashes[f"{name} render {query}"] = _sha(golden_engine.render_output(path, query))
    return hashes


def test_output_bytes_match_the_recorded_hashes(tmp_path: Path) -> None:
    actual = _outputs(tmp_path)
    if WRITE:
        GOLDEN.write_text(json.dumps(actual, indent=1, sort_keys=True) + "\n")
        pytest.skip("golden hashes written")
    expected = json.loads(GOLDEN.read_text())
    changed = sorted(k for k in expected if actual.get(k) != expected[k])
    added = sorted(set(actual) - set(expected))
    assert not changed, f"output bytes changed for {len(changed)} outputs: {changed}"
    assert not added, f"outputs with no recorded hash: {added}"
