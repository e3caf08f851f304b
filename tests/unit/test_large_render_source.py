"""The large render source: which originals get a copy fitted inside LARGE_BOX, and that a
render too large for the base copy (w=2400) is made from it at the size the original
gives, with the original's pixels."""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
import pytest
from PIL import Image

from imgpipe.domain.errors import ProcessTimeout
from imgpipe.domain.media import ImageFormat, Limits, ProbeResult
from imgpipe.domain.render_options import parse_options
from imgpipe.engine import render_source
from imgpipe.engine.deadline import Deadline
from imgpipe.engine.plan import plan
from imgpipe.engine.probe import probe
from imgpipe.engine.render import render
from imgpipe.storage import keys

LIMITS = Limits(max_upload_bytes=50 << 20, max_pixels=268_435_456, max_frames=500)


def jpeg(width: int, height: int, *, progressive: bool = False) -> ProbeResult:
    return ProbeResult(ImageFormat.JPEG, width, height, progressive=progressive)


@pytest.mark.parametrize(
    ("facts", "size"),
    [
        (jpeg(6000, 4000), (3240, 2160)),  # 24 MP: 3.4 times the copy's pixels
        (jpeg(4000, 6000), (1440, 2160)),  # the same, upright portrait
        (jpeg(4032, 3024), (2880, 2160)),  # 12 MP: twice the copy's pixels
        (jpeg(3264, 2448), None),  # 8 MP baseline: 1.3 times, and libjpeg scales it
        (jpeg(4217, 2817, progressive=True), (3233, 2160)),  # progressive: decoded in full
        (jpeg(3000, 2000, progressive=True), None),  # fits in the box already
        (ProbeResult(ImageFormat.PNG, 8000, 6000), (2880, 2160)),
        (ProbeResult(ImageFormat.WEBP, 6000, 4000, frames=10), None),  # animations: never
    ],
)
def test_which_originals_get_a_large_copy(facts: ProbeResult, size: tuple[int, int]) -> None:
    assert render_source.large_source_size(facts) == size


@pytest.mark.parametrize(
    ("query", "source"),
    [
        ("w=800&h=600", (1620, 1080)),  # the base copy, as before
        ("w=1620", (1620, 1080)),
        ("w=2400", (3240, 2160)),  # too large for the base copy: the large one
        ("w=3240", (3240, 2160)),
        ("w=4000", None),  # too large for both: the original
    ],
)
def test_a_render_reads_the_smallest_copy_that_holds_it(
    query: str, source: tuple[int, int] | None
) -> None:
    facts = jpeg(6000, 4000)
    planned = plan(parse_options(parse_qsl(query)), facts.upright_size)
    assert render_source.source_for(facts, planned.decode) == source


def test_without_a_large_copy_a_large_render_reads_the_original() -> None:
    facts = jpeg(3264, 2448)
    planned = plan(parse_options(parse_qsl("w=2400")), facts.upright_size)
    assert render_source.source_for(facts, planned.decode) is None


def test_a_w2400_render_from_the_large_copy_matches_one_from_the_original(
    tmp_path: Path,
) -> None:
    width, height = 4800, 3200
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([(x // 7) % 256, (y // 5) % 256, ((x + y) // 11) % 256], axis=-1).astype(
        np.uint8
    )
    original = tmp_path / "big.jpg"
    Image.fromarray(pixels, "RGB").save(original, quality=90, progressive=True)
    facts = probe(original, LIMITS)
    options = parse_options(parse_qsl("w=2400&format=png"))
    planned = plan(options, facts.upright_size)
    size = render_source.source_for(facts, planned.decode)
    assert size == render_source.large_source_size(facts) == (3240, 2160)

    copy = tmp_path / "large-copy.jpg"
    copy.write_bytes(render_source.make_source(original, facts, size))
    copy_facts = probe(copy, LIMITS)
    assert copy_facts.upright_size == size
    from_copy = render(
        copy, copy_facts, options, ImageFormat.PNG, planned=planned, render_source=True
    )
    from_original = render(original, facts, options, ImageFormat.PNG)

    assert (from_copy.width, from_copy.height) == (from_original.width, from_original.height)
    assert (from_copy.width, from_copy.height) == (2400, 1600)
    a = np.asarray(Image.open(io.BytesIO(from_copy.data)).convert("RGB"), dtype=np.float32)
    b = np.asarray(Image.open(io.BytesIO(from_original.data)).convert("RGB"), dtype=np.float32)
    assert np.abs(a - b).mean() < 6

    # As a WebP (larger than the base copy's box: the fastest effort), the same size.
    webp = render(copy, copy_facts, options, ImageFormat.WEBP, planned=planned, render_source=True)
    with Image.open(io.BytesIO(webp.data)) as decoded:
        assert (decoded.format, decoded.size) == ("WEBP", (2400, 1600))


def test_the_large_copy_has_a_key_of_its_own() -> None:
    sha = "ab" * 32
    base = keys.render_source(sha, render_source.SOURCE_VERSION)
    large = keys.render_source(sha, render_source.SOURCE_VERSION, large=True)
    assert base != large and large.startswith(keys.renders_prefix(sha))


def test_a_deadline_stops_the_copy_and_otherwise_changes_no_byte(tmp_path: Path) -> None:
    """The worker makes the large copy under a deadline of its own (a file that decodes
    slowly must not hold it); the bytes must stay those a render makes without one."""
    original = tmp_path / "big.jpg"
    pixels = np.random.default_rng(1).integers(0, 256, size=(2400, 4000, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(original, quality=80, progressive=True)
    facts = probe(original, LIMITS)
    size = render_source.large_source_size(facts)
    assert size == (3600, 2160)
    with pytest.raises(ProcessTimeout):
        render_source.make_source(original, facts, size, Deadline(0))
    timed = render_source.make_source(original, facts, size, Deadline(60))
    assert timed == render_source.make_source(original, facts, size)
