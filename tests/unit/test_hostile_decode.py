"""Hostile bytes through every loader: truncations and a seeded mutation fuzzer.

Each case runs the same gate and decode the API and the worker run (engine.probe, then
steps.decode). Whatever a file holds, the outcome is one of: accepted, or an ImgpipeError
whose status is 4xx. Never another exception (a 500), never a hang, and never a truncated
image decoded with its missing part padded (silent grey).
"""

from __future__ import annotations

import io
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import pyvips
from PIL import Image

from imgpipe.domain.errors import CorruptImage, ImgpipeError
from imgpipe.domain.media import ImageFormat, Limits, ProbeResult
from imgpipe.domain.profiles import ProfileSet
from imgpipe.domain.render_options import parse_options
from imgpipe.engine.pipeline import render_variants
from imgpipe.engine.probe import probe
from imgpipe.engine.render import render
from imgpipe.engine.steps.decode import decode
from imgpipe.jobs.celery_queue import _soft_limit_is_a_timeout

LIMITS = Limits(50_000_000, 40_000_000, 50)
WIDTH, HEIGHT = 320, 240
# One decode of these small images takes milliseconds; the bound is for a hang, with
# headroom for a loaded two-core machine.
CASE_BOUND_S = 10.0


def _pixels() -> pyvips.Image:
    """Detailed content (a gradient under noise), so every format spends real bytes."""
    ramp = pyvips.Image.xyz(WIDTH, HEIGHT).extract_band(0).cast("uchar")
    noise = pyvips.Image.gaussnoise(WIDTH, HEIGHT, mean=128, sigma=50, seed=7).cast("uchar")
    mixed = ((ramp + noise) / 2).cast("uchar")
    image: pyvips.Image = ramp.bandjoin([noise, mixed]).copy(interpretation="srgb")
    return image


def _pillow(fmt: str, **options: object) -> Callable[[], bytes]:
    def make() -> bytes:
        image = Image.frombytes("RGB", (WIDTH, HEIGHT), _pixels().write_to_memory())
        out = io.BytesIO()
        if fmt == "HEIF":
            import pillow_heif

            pillow_heif.from_pillow(image).save(out, quality=60)
        else:
            image.save(out, fmt, **options)
        return out.getvalue()

    return make


FORMATS: dict[str, Callable[[], bytes]] = {
    "jpeg": lambda: bytes(_pixels().jpegsave_buffer(Q=85)),
    "jpeg-progressive": lambda: bytes(_pixels().jpegsave_buffer(Q=85, interlace=True)),
    "png": lambda: bytes(_pixels().pngsave_buffer()),
    "webp": lambda: bytes(_pixels().webpsave_buffer(Q=80)),
    "gif": lambda: bytes(_pixels().gifsave_buffer()),
    "tiff": lambda: bytes(_pixels().tiffsave_buffer()),
    "tiff-deflate": lambda: bytes(_pixels().tiffsave_buffer(compression="deflate")),
    "avif": lambda: bytes(_pixels().heifsave_buffer(compression="av1", Q=50, effort=0)),
    "heic": _pillow("HEIF"),
    "bmp": _pillow("BMP"),
}


def outcome(path: Path) -> str:
    """'ok', or the problem code; fails the test on any other exception or a 5xx code."""
    started = time.monotonic()
    try:
        facts = probe(path, LIMITS)
        decode(path, facts, (WIDTH // 4, HEIGHT // 4), all_frames=False)
        result = "ok"
    except ImgpipeError as exc:
        assert exc.status < 500, f"{path.name}: {exc.code} ({exc.status}): {exc.detail}"
        result = exc.code
    assert time.monotonic() - started < CASE_BOUND_S, f"{path.name} took too long"
    return result


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_intact_image_is_accepted(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(FORMATS[name]())
    assert outcome(path) == "ok"


@pytest.mark.parametrize("name", sorted(FORMATS))
@pytest.mark.parametrize("fraction", [0.15, 0.4, 0.6, 0.85, 0.97])
def test_a_truncated_image_is_corrupt(name: str, fraction: float, tmp_path: Path) -> None:
    data = FORMATS[name]()
    path = tmp_path / name
    path.write_bytes(data[: int(len(data) * fraction)])
    assert outcome(path) == "corrupt_image"


@pytest.mark.parametrize("name", ["jpeg", "jpeg-progressive"])
@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8])
def test_a_jpeg_cut_short_with_an_end_marker_appended_is_corrupt(
    name: str, fraction: float, tmp_path: Path
) -> None:
    # The attack that ended `done` with a flat grey lower half: the end marker hides the
    # cut from a container check, only the decoder's warning (fail_on=warning) sees it.
    data = FORMATS[name]()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: int(len(data) * fraction)] + b"\xff\xd9")
    assert outcome(path) == "corrupt_image"


def test_a_jpeg_frame_declaring_far_more_pixels_than_its_data_is_refused_at_the_door(
    tmp_path: Path,
) -> None:
    data = bytearray(FORMATS["jpeg"]())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (16384).to_bytes(2, "big") * 2  # height, width
    path = tmp_path / "bomb.jpg"
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptImage, match="needs at least"):
        probe(path, Limits(50_000_000, 300_000_000, 50))


def _mutants(data: bytes, rng: random.Random, count: int) -> list[tuple[str, bytes]]:
    """Bit flips, byte runs, truncations and corrupted markers or box headers."""
    out: list[tuple[str, bytes]] = []
    structural = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] != 0]
    structural += [i for i in range(4, min(len(data), 4096) - 4) if data[i : i + 4].isalpha()]
    for n in range(count):
        mutant = bytearray(data)
        kind = n % 5
        if kind == 0:  # a few bit flips anywhere
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(len(mutant))
                mutant[i] ^= 1 << rng.randrange(8)
        elif kind == 1:  # a run of random bytes in the first kilobytes (headers)
            i = rng.randrange(min(len(mutant), 2048))
            for j in range(i, min(len(mutant), i + rng.randint(1, 16))):
                mutant[j] = rng.randrange(256)
        elif kind == 2:  # truncation, sometimes with the format's tail re-appended
            cut = rng.randrange(8, len(mutant))
            mutant = mutant[:cut] + (bytearray(data[-2:]) if rng.random() < 0.5 else b"")
        elif kind == 3 and structural:  # a marker or box header: its length or type
            i = rng.choice(structural)
            for j in range(max(0, i - 4), min(len(mutant), i + 6)):
                if rng.random() < 0.5:
                    mutant[j] = rng.choice((0x00, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        else:  # a size field blown up (a 32-bit big-endian or little-endian word)
            i = rng.randrange(0, min(len(mutant), 512) - 4)
            words = (b"\xff\xff\xff\xf0", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff")
            mutant[i : i + 4] = rng.choice(words)
        label = f"m{n}-cut{len(mutant)}" if kind == 2 else f"m{n}-k{kind}"
        out.append((label, bytes(mutant)))
    return out


FUZZ_SEED = 1515
MUTANTS_PER_FORMAT = 24


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_seeded_mutation_fuzzer_gives_no_5xx_and_no_hang(name: str, tmp_path: Path) -> None:
    rng = random.Random(f"{FUZZ_SEED}-{name}")
    data = FORMATS[name]()
    codes: dict[str, int] = {}
    for label, mutant in _mutants(data, rng, MUTANTS_PER_FORMAT):
        path = tmp_path / f"{name}-{label}"
        path.write_bytes(mutant)
        result = outcome(path)
        if "-cut" in label and int(label.split("-cut")[1]) < len(data) - 16:
            # No grey-padded success: a file that lost its tail is never accepted.
            assert result != "ok", f"{label}: a truncated {name} was accepted"
        codes[result] = codes.get(result, 0) + 1
        path.unlink()
    assert sum(codes.values()) == MUTANTS_PER_FORMAT
    assert set(codes) <= {
        "ok",
        "corrupt_image",
        "unsupported_type",
        "too_many_pixels",
        "too_many_frames",
    }, codes


def test_corrupt_pixels_met_by_a_render_are_corrupt_image(tmp_path: Path) -> None:
    # The class of a fax TIFF whose variants succeeded but whose full-size decode meets a
    # bad code word: whichever caller decodes the bad part, the error is the file's.
    data = FORMATS["jpeg"]()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2] + b"\xff\xd9")
    facts = ProbeResult(ImageFormat.JPEG, WIDTH, HEIGHT)  # as if stored before the check
    options = parse_options([("w", str(WIDTH))], None)
    with pytest.raises(CorruptImage):
        render(path, facts, options, ImageFormat.WEBP)


def _broken_animation() -> bytes:
    """Four noisy GIF frames with eight bytes of the image data overwritten: the header
    and frame table are intact, so the gate accepts it and decoding fails later."""
    noise = random.Random(2)
    frames = [
        Image.frombytes("RGB", (160, 120), noise.randbytes(160 * 120 * 3)).convert("P")
        for _ in range(4)
    ]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100)
    data = bytearray(out.getvalue())
    middle = len(data) // 2
    data[middle : middle + 8] = b"\xff" * 8
    return bytes(data)


def test_a_broken_animation_is_corrupt_image_while_other_threads_fail_too(
    tmp_path: Path,
) -> None:
    # Frames decode lazily, so the damage shows up inside the encoder, and libvips keeps
    # one error text per process: with several workers failing at once, one thread's
    # failure often arrived with no reason ("unable to call webpsave_buffer") and was
    # reported as engine_error, a fault of imgpipe, instead of the file's.
    path = tmp_path / "broken.gif"
    path.write_bytes(_broken_animation())
    facts = probe(path, LIMITS)
    assert facts.animated
    with pytest.raises(pyvips.Error):  # the damage is real: decoding alone fails
        pyvips.Image.new_from_file(str(path), n=-1, fail_on="warning").avg()
    variant_specs = [s for profile in ProfileSet.builtin().select(None) for s in profile.variants()]

    def codes(_: int) -> set[str]:
        outcomes = render_variants(path, facts, variant_specs).outcomes.values()
        return {getattr(outcome, "code", "done") for outcome in outcomes}

    with ThreadPoolExecutor(8) as pool:
        seen = set().union(*pool.map(codes, range(48)))
    assert seen == {"corrupt_image"}


# A signal that lands inside a libvips log callback is reported by cffi as unraisable.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_step_stuck_past_the_soft_limit_fails_as_timeout(tmp_path: Path) -> None:
    """Celery's soft time limit is SIGUSR1 in the pool process; the worker's handler
    (jobs/celery_queue.py) turns it into ProcessTimeout, which the engine reports as the
    variants' ``timeout`` (permanent), not ``internal_error`` (retried)."""
    path = tmp_path / "big.png"
    big = pyvips.Image.gaussnoise(6000, 6000, seed=3).cast("uchar")
    big.bandjoin([big, big]).copy(interpretation="srgb").pngsave(str(path), compression=1)
    facts = probe(path, Limits(500_000_000, 100_000_000, 10))
    specs = ProfileSet.builtin().select(None)
    variant_specs = [spec for profile in specs for spec in profile.variants()]
    previous = signal.getsignal(signal.SIGUSR1)
    _soft_limit_is_a_timeout()
    finished = threading.Event()

    def soft_limit() -> None:
        # Python runs a signal handler between bytecodes; one that lands inside a libvips
        # log callback is swallowed by cffi, so this keeps signalling until it is seen.
        while not finished.wait(0.2):
            os.kill(os.getpid(), signal.SIGUSR1)

    sender = threading.Thread(target=soft_limit)
    try:
        sender.start()
        try:
            outcomes = dict(render_variants(path, facts, variant_specs).outcomes)
        except ImgpipeError as exc:  # between variants: services/process.py fails them all
            outcomes = {spec.name: exc for spec in variant_specs}
    finally:
        finished.set()
        sender.join()
        signal.signal(signal.SIGUSR1, previous)
    codes = {getattr(o, "code", "done") for o in outcomes.values()}
    # The step the limit interrupted fails as `timeout`; variants that were made before
    # (or between signals) stay made. Never internal_error or engine_error.
    assert "timeout" in codes and codes <= {"timeout", "done"}, codes
