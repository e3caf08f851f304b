"""Which decoder reads which format: libvips where pyvips-binary can, else a fallback.

pyvips-binary decodes JPEG, PNG, WebP, GIF, TIFF and AV1 (AVIF), but not HEVC-coded HEIC
(the iPhone default) nor BMP. Those two are decoded by pi-heif (decode-only libheif with
libde265) and Pillow, in a child process with its own memory limit and the deadline as
its wall timeout (engine/isolated.py), and handed to the same pipeline, as are camera RAW
(LibRaw through rawpy: engine/raw.py) and JPEG XL (libjxl through imagecodecs, the `jxl`
extra: engine/jxl.py). The registry (domain/formats.py) names each format's loader.
Loaders are always named explicitly: libvips' own sniffing would happily open SVG or PDF.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyvips

from imgpipe.domain.formats import FORMATS, Loader
from imgpipe.domain.media import ImageFormat

# Which libvips loader reads which format comes from the registry (domain/formats.py).
_VIPS_LOADERS = {
    spec.format: spec.vips_loader
    for spec in FORMATS.values()
    if spec.loader is Loader.VIPS and spec.vips_loader
}

VIPS_DECODED = frozenset(_VIPS_LOADERS)


def load_header(path: Path, fmt: ImageFormat) -> Any:
    """The image's header only: pyvips reads no pixels until something asks for them."""
    loader = _VIPS_LOADERS[fmt]
    return pyvips.Operation.call(loader, str(path), access="sequential")


def open_heif(path: Path) -> Any:
    import pi_heif

    return pi_heif.open_heif(str(path), convert_hdr_to_8bit=True)


# A decode in the child process with no deadline to keep (the batch CLI's probes, tests)
# still gets a wall limit.
ISOLATED_TIMEOUT_S = 120.0


def decode_to_vips(
    path: Path,
    fmt: ImageFormat,
    at_least: tuple[int, int] | None = None,
    *,
    timeout_s: float | None = None,
    decode_bytes: int = 0,
) -> Any:
    """Fully decode a HEIC, BMP, camera RAW or JPEG XL into a libvips image (sRGB or with
    its ICC attached). ``at_least``: the size the caller shrinks to, which lets a camera
    RAW skip the full-size demosaic when half the sensor covers it. HEIC and BMP are
    decoded in a child process (engine/isolated.py) bounded by ``timeout_s`` and by
    memory for ``decode_bytes`` (the probe's figure)."""
    loader = FORMATS[fmt].loader
    if loader is Loader.RAWPY:
        from imgpipe.engine.raw import decode_raw

        return decode_raw(path, fmt, at_least)
    if loader is Loader.JXL:
        from imgpipe.engine.jxl import decode_jxl

        return decode_jxl(path)
    if fmt not in (ImageFormat.HEIC, ImageFormat.BMP):  # pragma: no cover - routed elsewhere
        raise ValueError(f"{fmt} is decoded by libvips")
    from imgpipe.engine.isolated import decode_isolated, memory_limit

    pixels, width, height, bands, icc = decode_isolated(
        path,
        fmt.value,
        timeout_s=ISOLATED_TIMEOUT_S if timeout_s is None else timeout_s,
        memory_bytes=memory_limit(decode_bytes),
    )
    image = pyvips.Image.new_from_memory(pixels, width, height, bands, "uchar")
    image = image.copy(interpretation="srgb" if bands >= 3 else "b-w")
    if icc:
        image.set_type(pyvips.GValue.blob_type, "icc-profile-data", icc)
    return image


# Refuse truncated or broken pixel data instead of padding it with grey. Passed to
# thumbnail itself: thumbnail overrides a fail_on given in the filename's options.
# "warning", not "error" or "truncated": libjpeg meets a scan cut short by an end marker
# (or a frame header declaring more pixels than the data holds) with the warning
# "premature end of data segment" and pads the rest with grey; only fail_on=warning
# turns that into an error. Every corpus image decodes cleanly at this level.
FAIL_ON = "warning"

# Warnings that say nothing about the pixels: junk between two markers (some cameras
# pad after the scan). An image refused for one of these alone is decoded again at
# fail_on=error instead (steps/decode.py).
_HARMLESS = ("extraneous bytes before marker",)


def harmless_warning(message: str) -> bool:
    """Whether a libvips error raised at fail_on=warning names only a harmless warning."""
    lines = [line for line in message.lower().splitlines() if "jpeg" in line]
    return bool(lines) and all(any(h in line for h in _HARMLESS) for line in lines)


def vips_source(path: Path, *, all_frames: bool) -> str:
    """A filename with loader options for libvips' thumbnail."""
    return f"{path}[n=-1]" if all_frames else str(path)
