"""Output checks: dimensions, SSIM against a float Lanczos reference, colour difference.

References are built with plain sRGB floats (no linearisation), the space every method
under test resizes in: the original is decoded in full with Pillow, EXIF orientation
applied, and each channel resized in Pillow's 32-bit float mode ('F') with LANCZOS to the
exact size of the output it is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

FloatImage = npt.NDArray[np.float32]


COLOUR_BLOCK = 8


@dataclass(frozen=True)
class ColourDiff:
    """Mean CIE76 colour difference and mean absolute 8-bit RGB difference, both taken
    over the means of COLOUR_BLOCK x COLOUR_BLOCK blocks: colour, not resampling or
    compression detail."""

    delta_e76: float
    mean_abs_rgb: float


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header only."""
    with Image.open(path) as image:
        return image.size


def has_icc_profile(path: Path) -> bool:
    with Image.open(path) as image:
        return bool(image.info.get("icc_profile"))


def load_rgb(path: Path) -> FloatImage:
    """Decode as 8-bit sRGB values (ignoring any ICC profile), oriented, as float32."""
    with Image.open(path) as image:
        rgb = ImageOps.exif_transpose(image).convert("RGB")
    return np.asarray(rgb, dtype=np.float32)


def lanczos_resize(pixels: FloatImage, size: tuple[int, int]) -> FloatImage:
    """Resize an HxWx3 float image per channel with Pillow's float LANCZOS."""
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(pixels[:, :, c]), mode="F").resize(
                size, Image.Resampling.LANCZOS
            ),
            dtype=np.float32,
        )
        for c in range(pixels.shape[2])
    ]
    return np.clip(np.stack(channels, axis=2), 0.0, 255.0)


def encoded_like_output(reference: FloatImage, quality: int) -> FloatImage:
    """`reference` rounded to 8 bits and put through WebP at `quality` (Pillow's libwebp,
    default effort): the best any method can do once the output format is fixed."""
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.round(reference).astype(np.uint8)).save(buffer, "WEBP", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.float32)


def ssim(reference: FloatImage, candidate: FloatImage) -> float:
    from skimage.metrics import structural_similarity

    value = structural_similarity(  # type: ignore[no-untyped-call]
        reference, candidate, channel_axis=2, data_range=255.0
    )
    return float(value)


def block_means(pixels: FloatImage, block: int = COLOUR_BLOCK) -> FloatImage:
    """Average over block x block tiles (edges that do not fill a tile are dropped)."""
    rows, cols = pixels.shape[0] // block, pixels.shape[1] // block
    tiles = pixels[: rows * block, : cols * block].reshape(rows, block, cols, block, -1)
    return np.asarray(tiles.mean(axis=(1, 3), dtype=np.float64), dtype=np.float32)


def colour_diff(reference: FloatImage, candidate: FloatImage) -> ColourDiff:
    from skimage.color import deltaE_cie76, rgb2lab

    reference, candidate = block_means(reference), block_means(candidate)
    delta = deltaE_cie76(  # type: ignore[no-untyped-call]
        rgb2lab(reference / 255.0), rgb2lab(candidate / 255.0)
    )
    return ColourDiff(
        delta_e76=float(np.mean(delta)),
        mean_abs_rgb=float(np.mean(np.abs(reference - candidate))),
    )


def managed_srgb(path: Path, intent: str = "relative") -> FloatImage:
    """Colour-managed conversion to sRGB with libvips: the embedded ICC profile if any,
    else libvips's built-in fallback for CMYK (or sRGB), with the given rendering intent."""
    import pyvips

    image = pyvips.Image.new_from_file(str(path)).autorot()
    fallback = "cmyk" if image.interpretation == "cmyk" else "srgb"
    srgb = image.icc_transform("srgb", embedded=True, input_profile=fallback, intent=intent)
    return np.asarray(srgb.numpy(), dtype=np.float32)[:, :, :3]


class ReferenceCache:
    """Full-resolution float originals, resized on demand and memoised by output size."""

    def __init__(self, original: FloatImage) -> None:
        self._original = original
        self._resized: dict[tuple[int, int], FloatImage] = {}

    def at(self, size: tuple[int, int]) -> FloatImage:
        if size not in self._resized:
            self._resized[size] = lanczos_resize(self._original, size)
        return self._resized[size]
