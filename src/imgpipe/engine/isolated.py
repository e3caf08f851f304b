"""Decode with Pillow (BMP) or pi-heif (HEIC) in a child process with its own limits.

libvips checks its kill flag as it works, so the deadline stops its decodes (see
engine/deadline.py); Pillow and pi-heif decode a whole image in one call that nothing can
interrupt, and Pillow's BMP RLE decoder is Python, a few megapixels a second. In
``imgpipe serve`` the API, the web page and the workers share one process, so such a
decode holds a worker thread and the whole process's memory. Here it runs in a child
with an address-space limit (RLIMIT_AS) and a wall timeout: past either, the child is
gone, the parent raises ``ProcessTimeout`` or ``TooManyPixels``, and nothing it took
stays behind. The pixels come back over a pipe, byte-identical to an in-process decode.

The child is started with ``subprocess`` (no fork of a threaded process), runs only
this module's ``main``, and imports neither pyvips nor the rest of imgpipe.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from imgpipe.domain.errors import CorruptImage, ProcessTimeout, TooManyPixels

# Address space for the interpreter, numpy, Pillow or libheif and their thread stacks,
# before any pixel: measured at about 450 MB of mappings for a HEIC decode.
BASE_ADDRESS_SPACE = 1 << 30
# Copies of the decoded pixels alive at once: the decoder's buffer, the RGB(A)
# conversion, and the bytes written out.
PIXEL_COPIES = 3
_HEADER = struct.Struct("<IIII")  # width, height, bands, ICC profile length
_CORRUPT_EXIT = 3
_MEMORY_EXIT = 4


def memory_limit(decode_bytes: int) -> int:
    """The child's RLIMIT_AS for an image of ``decode_bytes`` decoded bytes."""
    return BASE_ADDRESS_SPACE + PIXEL_COPIES * decode_bytes


def decode_isolated(
    path: Path, fmt: str, *, timeout_s: float, memory_bytes: int
) -> tuple[bytes, int, int, int, bytes | None]:
    """(pixels, width, height, bands, ICC profile) of the file's first image, 8-bit,
    interleaved. ``fmt``: "bmp" or "heic"."""
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}  # arenas are address space, not memory
    command = [sys.executable, "-m", "imgpipe.engine.isolated", str(path), fmt, str(memory_bytes)]
    with subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    ) as child:
        try:
            out, err = child.communicate(timeout=max(0.1, timeout_s))
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            raise ProcessTimeout(
                f"Decoding the {fmt.upper()} ran past {timeout_s:.3g} s and was stopped."
            ) from None
    if child.returncode == _MEMORY_EXIT:
        raise TooManyPixels(
            f"Decoding the {fmt.upper()} needed more than {memory_bytes} bytes of memory."
        )
    if child.returncode != 0 or len(out) < _HEADER.size:
        reason = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise CorruptImage(f"The {fmt.upper()} data could not be decoded ({reason[0][:200]}).")
    width, height, bands, icc_length = _HEADER.unpack_from(out)
    icc_end = _HEADER.size + icc_length
    pixels = out[icc_end:]
    if len(pixels) != width * height * bands:
        raise CorruptImage(f"The {fmt.upper()} decoder returned short data.")
    return pixels, width, height, bands, out[_HEADER.size : icc_end] or None


def decode_array(path: Path, fmt: str) -> tuple[Any, bytes | None]:
    """The decode itself, in whichever process runs it: an (h, w, bands) uint8 array."""
    import numpy as np

    icc: bytes | None
    if fmt == "heic":
        import pi_heif

        heif = pi_heif.open_heif(str(path), convert_hdr_to_8bit=True)
        # A copy: pi-heif's array view does not keep the decoded buffer alive past ``heif``.
        array = np.array(heif, copy=True)
        icc = heif.info.get("icc_profile")
    else:
        from PIL import Image

        # imgpipe's own limits were checked from the header already; Pillow's separate
        # bomb guard (a lower default) must not turn an accepted image into a failure.
        Image.MAX_IMAGE_PIXELS = None
        with Image.open(path) as im:
            im.load()
            rgb = im.convert("RGBA" if "A" in im.getbands() else "RGB")
            array = np.asarray(rgb)
            icc = im.info.get("icc_profile")
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    return np.ascontiguousarray(array), icc


def main(argv: list[str]) -> int:
    import resource

    path, fmt, limit = Path(argv[0]), argv[1], int(argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        array, icc = decode_array(path, fmt)
    except MemoryError:
        return _MEMORY_EXIT
    except Exception as exc:  # the file's fault: the parent reports corrupt_image
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return _CORRUPT_EXIT
    height, width, bands = array.shape
    out = sys.stdout.buffer
    out.write(_HEADER.pack(width, height, bands, len(icc or b"")))
    out.write(icc or b"")
    out.write(memoryview(array).cast("B"))
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
