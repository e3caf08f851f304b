"""libvips and decoder failures mapped to the error tree, in one place.

Every engine entry point (the worker's pipeline, renders, the batch CLI) runs its pixel
work inside ``vips_errors``: corrupt or truncated pixel data met while decoding becomes
``CorruptImage`` (422 ``corrupt_image``) wherever it is met, anything else libvips reports
``EngineFailure``. Errors of the tree pass through unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pyvips

from imgpipe.domain.errors import CorruptImage, EngineFailure, ImgpipeError

log = logging.getLogger(__name__)

# Words libvips' loaders use when the pixel data itself is broken.
_CORRUPT_WORDS = ("premature", "truncat", "corrupt", "invalid", "read", "bad code", "decode")


def as_error(exc: BaseException) -> ImgpipeError:
    """The error-tree member for an exception raised by pixel work."""
    if isinstance(exc, ImgpipeError):
        return exc
    error: ImgpipeError
    if isinstance(exc, pyvips.Error):
        message = str(exc).lower()
        if any(word in message for word in _CORRUPT_WORDS):
            error = CorruptImage("The image data is corrupt or truncated.")
        else:
            error = EngineFailure(f"libvips failed: {str(exc).splitlines()[0]}")
    else:  # a bug, not the image: fail this output, keep the worker
        log.error("pixel work failed unexpectedly", exc_info=exc)
        error = EngineFailure(f"Rendering failed: {type(exc).__name__}.")
    error.__cause__ = exc
    return error


@contextmanager
def vips_errors() -> Iterator[None]:
    try:
        yield
    except ImgpipeError:
        raise
    except Exception as exc:
        raise as_error(exc) from exc
