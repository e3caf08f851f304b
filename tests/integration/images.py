"""Images made in memory for the end-to-end tests, and small helpers to inspect results.

Every generator returns the encoded file as bytes. Nothing is read from disk. Generators
that take a moment (the decompression-bomb PNG, the 10,000-frame GIF) are cached.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from collections.abc import Sequence

import numpy as np
import pyvips
from PIL import ExifTags, Image, ImageCms, ImageOps

RGB = tuple[int, int, int]

RED: RGB = (220, 30, 30)
GREEN: RGB = (30, 200, 40)
BLUE: RGB = (30, 40, 220)
YELLOW: RGB = (240, 220, 30)
QUADRANT_COLOURS: tuple[RGB, RGB, RGB, RGB] = (RED, GREEN, BLUE, YELLOW)  # TL, TR, BL, BR

FRAME_COLOURS: tuple[RGB, ...] = (
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 255, 0),
    (255, 0, 255),
)

# Pillow save format and keyword arguments per imgpipe `original.format` name.
_SAVE_ARGS: dict[str, tuple[str, dict[str, object]]] = {
    "jpeg": ("JPEG", {"quality": 92}),
    "png": ("PNG", {}),
    "webp": ("WEBP", {"quality": 90}),
    "gif": ("GIF", {}),
    "tiff": ("TIFF", {"compression": "tiff_lzw"}),
    "avif": ("AVIF", {"quality": 90}),
    "bmp": ("BMP", {}),
}


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    """Encode a Pillow image in one of imgpipe's format names (jpeg, png, ...)."""
    pil_format, defaults = _SAVE_ARGS[fmt]
    out = io.BytesIO()
    image.save(out, pil_format, **{**defaults, **params})
    return out.getvalue()


def quadrants(width: int, height: int) -> Image.Image:
    """Four flat colour quadrants (red, green / blue, yellow): easy to check after resizing."""
    image = Image.new("RGB", (width, height))
    half_w, half_h = width // 2, height // 2
    boxes = [
        (0, 0, half_w, half_h),
        (half_w, 0, width, half_h),
        (0, half_h, half_w, height),
        (half_w, half_h, width, height),
    ]
    for box, colour in zip(boxes, QUADRANT_COLOURS, strict=True):
        image.paste(colour, box)
    return image


def still(fmt: str, width: int = 1000, height: int = 700) -> bytes:
    """A still quadrant image in the given format."""
    image = quadrants(width, height)
    if fmt == "gif":
        image = image.quantize(colors=16)
    return encode(image, fmt)


def heic_still(width: int = 1000, height: int = 700) -> bytes:
    """A HEIC (HEVC) still, encoded by pillow_heif (test extra: pi_heif and libvips only decode)."""
    import pillow_heif

    out = io.BytesIO()
    pillow_heif.from_pillow(quadrants(width, height)).save(out, quality=90)
    return out.getvalue()


def animated(fmt: str, size: tuple[int, int] = (320, 240)) -> bytes:
    """An animation of len(FRAME_COLOURS) flat frames, one colour each, as GIF or WebP."""
    frames = [Image.new("RGB", size, colour) for colour in FRAME_COLOURS]
    out = io.BytesIO()
    if fmt == "gif":
        frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    else:
        frames[0].save(
            out,
            "WEBP",
            save_all=True,
            append_images=frames[1:],
            duration=100,
            loop=0,
            lossless=True,
        )
    return out.getvalue()


def noisy(width: int, height: int, seed: int, quality: int = 90) -> bytes:
    """A gradient with seeded noise as JPEG: realistic work for encoders, unique per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack(
        [
            x * 255 // max(width - 1, 1),
            y * 255 // max(height - 1, 1),
            (x + y) * 127 // (width + height),
        ],
        axis=-1,
    )
    noise = rng.integers(-40, 40, size=(height, width, 3))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    return encode(Image.fromarray(pixels, "RGB"), "jpeg", quality=quality)


def progressive_noisy(width: int, height: int, seed: int, quality: int = 85) -> bytes:
    """``noisy``'s gradient and seeded noise as a progressive JPEG, made with pyvips (fast
    at 10 MP, where numpy takes seconds). libjpeg decodes a progressive file in full
    whatever the scale, so one larger than 3840x2160 gets a large render source."""
    x, y = pyvips.Image.xyz(width, height).bandsplit()
    base = (x * (255 / width)).bandjoin([y * (255 / height), (x + y) * (127 / (width + height))])
    noise = pyvips.Image.gaussnoise(width, height, sigma=20, mean=0, seed=seed).bandjoin(
        [pyvips.Image.gaussnoise(width, height, sigma=20, mean=0, seed=seed + i) for i in (1, 2)]
    )
    pixels = (base + noise).cast("uchar").copy(interpretation="srgb")
    data: bytes = pixels.jpegsave_buffer(Q=quality, interlace=True, keep="none")
    return data


def unique_png(seed: int, size: tuple[int, int] = (64, 48)) -> bytes:
    """A small PNG whose bytes differ for every seed (so no two uploads dedupe)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels, "RGB"), "png")


# --- EXIF orientation ---------------------------------------------------------------------

ORIENTED_SIZE = (400, 200)  # upright width x height

# What a viewer does to the stored pixels for each EXIF orientation (as ImageOps.exif_transpose).
_VIEWER_TRANSFORM = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# The inverse, used to store the pixels so that the viewer's transform makes them upright.
_STORE_TRANSFORM = {
    **_VIEWER_TRANSFORM,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}


def upright_reference() -> Image.Image:
    """400x200 landscape: a red block filling the top-left quadrant, blue elsewhere."""
    width, height = ORIENTED_SIZE
    image = Image.new("RGB", ORIENTED_SIZE, BLUE)
    image.paste(RED, (0, 0, width // 2, height // 2))
    return image


def oriented_jpeg(orientation: int) -> bytes:
    """The upright reference stored transformed and tagged so EXIF-aware viewers show it upright."""
    stored = upright_reference()
    if orientation != 1:
        stored = stored.transpose(_STORE_TRANSFORM[orientation])
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return encode(stored, "jpeg", quality=95, exif=exif)


def viewer_upright(data: bytes) -> Image.Image:
    """What an EXIF-honouring viewer displays (used to check the generator itself)."""
    image = Image.open(io.BytesIO(data))
    return ImageOps.exif_transpose(image).convert("RGB")


# --- colour -------------------------------------------------------------------------------


def cmyk_jpeg(cmyk: tuple[int, int, int, int], size: tuple[int, int] = (320, 240)) -> bytes:
    """A flat CMYK JPEG without an embedded profile (as many print workflows produce)."""
    return encode(Image.new("CMYK", size, cmyk), "jpeg", quality=95)


def _vips_flat(rgb: RGB, size: tuple[int, int]) -> pyvips.Image:
    flat = (pyvips.Image.black(size[0], size[1], bands=3) + list(rgb)).cast("uchar")
    return flat.copy(interpretation="srgb")


def cmyk_jpeg_with_profile(srgb: RGB, size: tuple[int, int] = (320, 240)) -> bytes:
    """An sRGB colour converted to CMYK through a real CMYK ICC profile, which is embedded."""
    cmyk = _vips_flat(srgb, size).icc_transform("cmyk", input_profile="srgb")
    return bytes(cmyk.jpegsave_buffer(Q=95))


def tagged_jpeg(values: RGB, profile: str, size: tuple[int, int] = (320, 240)) -> bytes:
    """A JPEG whose pixel numbers are `values`, tagged with libvips' built-in `profile` (p3...).

    A viewer that honours the profile shows a different colour from the same numbers read
    as sRGB; that difference is what the test looks for.
    """
    flat = _vips_flat(values, size)
    icc = flat.icc_transform(profile, input_profile="srgb").get("icc-profile-data")
    tagged = flat.copy()
    tagged.set_type(pyvips.GValue.blob_type, "icc-profile-data", icc)
    return bytes(tagged.jpegsave_buffer(Q=98))


def expected_srgb(
    data: bytes, xy: tuple[int, int], intent: ImageCms.Intent = ImageCms.Intent.PERCEPTUAL
) -> RGB:
    """The sRGB colour at xy of an image with an embedded ICC profile, converted by LittleCMS."""
    image = Image.open(io.BytesIO(data))
    source = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
    srgb = ImageCms.profileToProfile(
        image, source, ImageCms.createProfile("sRGB"), renderingIntent=intent, outputMode="RGB"
    )
    assert srgb is not None
    return srgb.getpixel(xy)  # type: ignore[return-value]


# --- alpha --------------------------------------------------------------------------------

ALPHA_SIZE = (300, 200)
HALF_ALPHA = 128


def rgba_png() -> bytes:
    """Left third fully transparent, middle third green at alpha 128, right third opaque green."""
    width, height = ALPHA_SIZE
    image = Image.new("RGBA", ALPHA_SIZE, (0, 0, 0, 0))
    image.paste((*GREEN, HALF_ALPHA), (width // 3, 0, 2 * width // 3, height))
    image.paste((*GREEN, 255), (2 * width // 3, 0, width, height))
    return encode(image, "png")


# --- metadata -----------------------------------------------------------------------------

CAMERA_MAKE = "TestCam"
GPS_LATITUDE = (52.0, 22.0, 30.5)
GPS_LONGITUDE = (4.0, 53.0, 10.25)
_XMP_WITH_GPS = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="52,22.5083N" '
    b'exif:GPSLongitude="4,53.1708E"/></rdf:RDF></x:xmpmeta>'
)


def gps_jpeg(size: tuple[int, int] = (640, 480)) -> bytes:
    """A camera-like JPEG: Make/Model EXIF, a GPS IFD with a position, and XMP with GPS."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = CAMERA_MAKE
    exif[ExifTags.Base.Model] = "Model Z"
    exif[ExifTags.Base.DateTime] = "2024:05:01 12:00:00"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = GPS_LATITUDE
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = GPS_LONGITUDE
    return encode(quadrants(*size), "jpeg", exif=exif, xmp=_XMP_WITH_GPS)


# --- bad input ----------------------------------------------------------------------------


def truncated_jpeg() -> bytes:
    """A valid noisy JPEG cut at 60% of its length: headers intact, scan data missing."""
    data = noisy(600, 400, seed=7)
    return data[: len(data) * 60 // 100]


def svg() -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100">'
        b'<rect width="200" height="100" fill="red"/></svg>\n'
    )


def pdf() -> bytes:
    out = io.BytesIO()
    quadrants(200, 100).save(out, "PDF")
    return out.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@functools.cache
def huge_dimensions_png(width: int = 30000, height: int = 30000) -> bytes:
    """A complete, valid 1-bit black PNG of width x height; compresses to about 100 KB.

    Written by hand because Pillow would hold 900 MB in memory for this image.
    """
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte "none" + packed 1-bit pixels
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


@functools.cache
def many_frames_gif(frames: int = 10_000) -> bytes:
    """An animated GIF of `frames` 1x1 frames, alternating red and blue (so none merge)."""
    palette = [255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6)
    images = []
    for index in range(frames):
        frame = Image.new("P", (1, 1), index % 2)
        frame.putpalette(palette)
        images.append(frame)
    out = io.BytesIO()
    images[0].save(out, "GIF", save_all=True, append_images=images[1:], duration=20, loop=0)
    return out.getvalue()


def oversized_jpeg(total_bytes: int) -> bytes:
    """A real JPEG padded with trailing bytes (ignored by decoders) to total_bytes."""
    data = still("jpeg", 200, 150)
    return data + b"\x00" * (total_bytes - len(data))


# --- inspecting results -------------------------------------------------------------------


def decode(data: bytes) -> Image.Image:
    """Open and fully decode (every frame), so a truncated file fails here."""
    image = Image.open(io.BytesIO(data))
    for index in range(getattr(image, "n_frames", 1)):
        image.seek(index)
        image.load()
    image.seek(0)
    return image


def mean_colour(image: Image.Image, box: tuple[int, int, int, int]) -> tuple[float, ...]:
    """Mean of each band over box (left, top, right, bottom) of the current frame."""
    region = np.asarray(image.crop(box), dtype=np.float64)
    return tuple(float(v) for v in region.reshape(-1, region.shape[-1]).mean(axis=0))


def centre_box(x: int, y: int, radius: int = 4) -> tuple[int, int, int, int]:
    return (x - radius, y - radius, x + radius, y + radius)


def colour_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Largest per-channel difference."""
    return max(abs(float(p) - float(q)) for p, q in zip(a, b, strict=True))


def expected_srgb_by_intent(data: bytes, xy: tuple[int, int]) -> dict[str, RGB]:
    """The sRGB colour under the two intents a viewer may use (they differ for LUT profiles)."""
    return {
        "perceptual": expected_srgb(data, xy, ImageCms.Intent.PERCEPTUAL),
        "relative colorimetric": expected_srgb(data, xy, ImageCms.Intent.RELATIVE_COLORIMETRIC),
    }


def assert_colour_any(
    actual: Sequence[float], candidates: dict[str, RGB], tolerance: float, where: str
) -> None:
    """Close to at least one of several acceptable colours."""
    distances = {name: colour_distance(actual, colour) for name, colour in candidates.items()}
    assert min(distances.values()) <= tolerance, (
        f"{where}: colour {tuple(round(v) for v in actual)}, expected one of {candidates} "
        f"within {tolerance} per channel"
    )


def assert_colour(
    actual: Sequence[float], expected: Sequence[float], tolerance: float, where: str
) -> None:
    assert colour_distance(actual, expected) <= tolerance, (
        f"{where}: colour {tuple(round(v) for v in actual)}, "
        f"expected {tuple(expected)} within {tolerance} per channel"
    )
