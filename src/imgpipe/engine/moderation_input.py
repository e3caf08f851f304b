"""The copy of an image a moderation backend sees: small, upright, sRGB, no alpha.

Decoded with shrink-on-load straight to the backend's size (NudeNet looks at 320x320;
Rekognition wants more detail and takes at most 5 MB), so a moderation job costs a
fraction of a variant decode. Transparent areas are flattened onto white, so a cut-out
on a transparent background is not judged against black.
"""

from __future__ import annotations

from pathlib import Path

import pyvips

from imgpipe.domain.errors import CorruptImage
from imgpipe.domain.media import Limits
from imgpipe.domain.moderation import ModerationImage
from imgpipe.engine.probe import probe
from imgpipe.engine.steps.decode import decode

JPEG_QUALITY = 90


def moderation_input(path: Path, limits: Limits, max_side: int) -> ModerationImage:
    """The first frame, its longer side at most ``max_side``, as raw RGB and as a JPEG."""
    facts = probe(path, limits)
    width, height = facts.upright_size
    scale = min(1.0, max_side / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = decode(path, facts, size, all_frames=False)
    try:
        if image.hasalpha():
            image = image.flatten(background=[255, 255, 255])
        if image.bands == 1:
            image = image.bandjoin([image, image])
        image = image.extract_band(0, n=3).copy_memory()
        jpeg: bytes = image.jpegsave_buffer(Q=JPEG_QUALITY, keep="none")
        rgb: bytes = image.write_to_memory()
    except pyvips.Error as exc:
        raise CorruptImage(f"The {facts.format.value.upper()} data could not be decoded.") from exc
    return ModerationImage(image.width, image.height, rgb, jpeg)
