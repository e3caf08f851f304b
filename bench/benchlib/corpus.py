"""Finding, staging and generating benchmark inputs. Nothing is ever written into the repo."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
DEFAULT_PHOTOS = SHARED / "corpus" / "photos"
FORMATS = SHARED / "corpus" / "formats"
COLOUR_FILES: tuple[str, ...] = (
    "jpeg-cmyk-plain_converted.jpg",
    "jpeg-ycck-swop-icc_photo.jpg",
    "jpeg-icc-displayp3_color-bars.jpg",
)
# formats/jpeg-cmyk-plain_converted.jpg was made from this photo (MANIFEST.md).
CMYK_SOURCE_PHOTO = SHARED / "corpus" / "photos" / "woman-bar-menu-text_24mp.jpg"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"})
CACHE_DIR = Path(tempfile.gettempdir()) / "imgpipe-bench"

# (width, height, EXIF orientation) of the synthetic stand-ins: 8-12 MP, some portrait,
# two with an orientation tag so that auto-rotation is exercised.
SYNTHETIC_SHAPES: tuple[tuple[int, int, int], ...] = (
    (4000, 3000, 1),
    (3464, 2309, 1),
    (3000, 4000, 1),
    (4240, 2832, 6),
    (3648, 2736, 1),
    (2816, 3752, 8),
    (4000, 2250, 1),
    (3872, 2592, 3),
)


def list_images(root: Path) -> list[Path]:
    """Image files under `root` (recursive, following file symlinks), hidden and empty skipped."""
    found = [
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and p.is_file()
        and p.stat().st_size > 0
    ]
    return sorted(found)


def stage(files: Iterable[Path], dest: Path) -> list[Path]:
    """Symlink `files` flat into `dest` so every method sees exactly the same inputs."""
    dest.mkdir(parents=True, exist_ok=True)
    staged = []
    for src in files:
        link = dest / src.name
        if link.exists() or link.is_symlink():
            raise ValueError(f"two inputs are named {src.name!r}; rename one")
        link.symlink_to(src.resolve())
        staged.append(link)
    return staged


def warm_file_cache(files: Iterable[Path]) -> int:
    """Read every file once so the first timed run does not pay for cold disk reads."""
    total = 0
    for path in files:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                total += len(chunk)
    return total


def _pattern(width: int, height: int, seed: int) -> Any:
    """A photo-like test card: smooth colour gradients, periodic detail and sensor noise."""
    import pyvips

    xy = pyvips.Image.xyz(width, height)
    x, y = xy[0], xy[1]
    red = x * (200.0 / width) + 30
    green = y * (200.0 / height) + 30
    # vips sin/cos take degrees
    blue = (x * (3.1 + seed)).sin() * 50 + (y * (4.7 + seed)).cos() * 50 + 128
    noise = pyvips.Image.gaussnoise(width, height, sigma=2.0 + seed % 3 * 4, mean=0)
    image = (red.bandjoin([green, blue]) + noise).cast("uchar")
    return image.copy(interpretation="srgb")


def write_jpeg(
    path: Path,
    width: int,
    height: int,
    *,
    quality: int,
    seed: int = 0,
    orientation: int = 1,
    progressive: bool = False,
) -> Path:
    """Generate a synthetic JPEG atomically (temp name, then rename)."""
    import pyvips

    image = _pattern(width, height, seed)
    if orientation != 1:
        image = image.copy()
        image.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.jpg")
    image.jpegsave(str(tmp), Q=quality, interlace=progressive)
    tmp.replace(path)
    return path


def synthetic_photos(
    dest: Path,
    shapes: Sequence[tuple[int, int, int]] = SYNTHETIC_SHAPES,
) -> list[Path]:
    """~8 synthetic 8-12 MP 'photos' (JPEG q90), generated once and cached under `dest`."""
    paths = []
    for seed, (width, height, orientation) in enumerate(shapes):
        path = dest / f"synthetic-{seed:02d}-{width}x{height}-o{orientation}.jpg"
        if not path.exists():
            write_jpeg(path, width, height, quality=90, seed=seed, orientation=orientation)
        paths.append(path)
    return paths
