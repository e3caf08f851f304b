"""Each moderation backend against the real thing it talks to: NudeNet's bundled model on
onnxruntime, and Rekognition's wire protocol (a stand-in on loopback, through boto3).

No image of nudity is needed or kept here: the model is checked to load, run, score in
range and be deterministic on generated and corpus photos; verdicts are the policy's tests.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgpipe import engine
from imgpipe.domain.media import Limits
from imgpipe.domain.moderation import (
    ModerationImage,
    ModerationRefused,
    ModerationUnavailable,
    Policy,
)
from imgpipe.engine.moderation_input import moderation_input
from imgpipe.moderation.rekognition import RekognitionModerator
from rekognition_server import StandIn, running_rekognition
from s3server import AWS_TEST_ENV

LIMITS = Limits(50_000_000, 100_000_000, 10)
CORPUS = Path(os.environ.get("IMGPIPE_TEST_PHOTOS", "/work/shared/corpus/photos"))


def _nudenet_installed() -> bool:
    try:
        import nudenet  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


# The extra is installed by `make test` (and so in CI, where its absence is a failure).
needs_nudenet = pytest.mark.skipif(
    not _nudenet_installed() and not os.environ.get("CI"),
    reason="the moderation extra (nudenet) is not installed",
)


def _photo(tmp_path: Path, seed: int, size: tuple[int, int] = (900, 600)) -> Path:
    """A photo-like JPEG: smooth gradients, shapes and sensor-like noise."""
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack(
        [
            120 + 80 * np.sin(x / (40 + seed) + seed),
            110 + 70 * np.cos(y / 55 + seed / 3),
            100 + 60 * np.sin((x + y) / 90),
        ],
        axis=-1,
    )
    pixels = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    path = tmp_path / f"photo-{seed}.jpg"
    Image.fromarray(pixels).save(path, quality=90)
    return path


def _photos(tmp_path: Path) -> list[Path]:
    made = [_photo(tmp_path, seed) for seed in (1, 2, 3)]
    corpus = sorted(CORPUS.glob("*.jpg"))[:4] if CORPUS.is_dir() else []
    return made + corpus


@pytest.fixture(scope="module", autouse=True)
def _configured() -> None:
    engine.configure()


# --- the copy a backend sees ---------------------------------------------------------


def test_the_moderation_copy_is_small_upright_rgb_and_a_jpeg(tmp_path: Path) -> None:
    source = Image.new("RGBA", (1200, 400), (0, 0, 0, 0))  # transparent: flattened on white
    source.paste((255, 0, 0, 255), (0, 0, 600, 400))
    path = tmp_path / "cutout.png"
    source.save(path)
    copy = moderation_input(path, LIMITS, 320)
    assert (copy.width, copy.height) == (320, 107)
    assert len(copy.rgb) == copy.width * copy.height * 3
    pixels = np.frombuffer(copy.rgb, np.uint8).reshape(copy.height, copy.width, 3)
    assert pixels[50, 20].tolist() == [255, 0, 0]
    assert pixels[50, 300].tolist() == [255, 255, 255]
    with Image.open(io.BytesIO(copy.jpeg)) as jpeg:
        assert jpeg.format == "JPEG" and jpeg.size == (320, 107)


# --- NudeNet -----------------------------------------------------------------------------


@needs_nudenet
def test_nudenet_loads_its_bundled_model_and_scores_photos_deterministically(
    tmp_path: Path,
) -> None:
    from imgpipe.moderation.nudenet_backend import CATEGORY, NudeNetModerator

    moderator = NudeNetModerator()
    moderator.check()
    assert moderator.model == "nudenet-320n"
    photos = _photos(tmp_path)
    cpu_ms: list[float] = []
    for path in photos:
        copy = moderation_input(path, LIMITS, moderator.max_side)
        started = time.process_time()
        first = moderator.classify(copy)
        cpu_ms.append((time.process_time() - started) * 1000)
        assert moderator.classify(copy) == first, f"not deterministic on {path.name}"
        for label in first:
            assert 0.0 <= label.score <= 1.0
            assert label.category == CATEGORY.get(label.name)
        Policy.parse("nudity=0.6:0.85").verdict(first)  # any labels give a verdict
    print(f"NudeNet CPU per image: {sorted(cpu_ms)} ms")


@needs_nudenet
def test_a_missing_nudenet_model_is_refused_at_start_naming_the_setting(tmp_path: Path) -> None:
    from imgpipe.moderation.nudenet_backend import NudeNetModerator

    with pytest.raises(ValueError, match=r"IMGPIPE_NUDENET_MODEL.*nothing is downloaded"):
        NudeNetModerator(tmp_path / "absent.onnx").check()


def test_without_the_extra_nudenet_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from imgpipe.moderation.nudenet_backend import NudeNetModerator

    monkeypatch.setitem(sys.modules, "nudenet", None)  # an import of it now fails
    with pytest.raises(ValueError, match=r"imgpipe\[moderation\]"):
        NudeNetModerator().check()


# --- Rekognition -------------------------------------------------------------------------


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    for name, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(name, value)
    with running_rekognition() as server:
        yield server


def _solid(colour: tuple[int, int, int]) -> ModerationImage:
    image = Image.new("RGB", (64, 48), colour)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return ModerationImage(64, 48, image.tobytes(), out.getvalue())


def test_rekognition_labels_come_back_with_categories_through_boto3(standin: StandIn) -> None:
    moderator = RekognitionModerator(standin.endpoint_url, "us-east-1", timeout_s=5)
    moderator.check()
    labels = {x.name: x for x in moderator.classify(_solid((220, 20, 20)))}
    assert labels["Graphic Violence"].score == pytest.approx(0.975)
    assert {x.category for x in labels.values()} == {"violence"}
    assert moderator.model == "rekognition-7.0"
    assert moderator.classify(_solid((128, 128, 128))) == []
    nudity = moderator.classify(_solid((20, 20, 220)))
    assert Policy.parse("nudity=0.6:0.85").verdict(nudity).value == "review"


def test_rekognition_throttling_is_transient_and_a_bad_image_permanent(standin: StandIn) -> None:
    moderator = RekognitionModerator(standin.endpoint_url, "us-east-1", timeout_s=5)
    standin.fail_next = ["ThrottlingException"]
    with pytest.raises(ModerationUnavailable, match="ThrottlingException"):
        moderator.classify(_solid((128, 128, 128)))
    broken = ModerationImage(1, 1, b"\0\0\0", b"not a jpeg")
    with pytest.raises(ModerationRefused, match="InvalidImageFormatException"):
        moderator.classify(broken)


def test_an_unreachable_rekognition_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(name, value)
    with running_rekognition() as server:
        endpoint = server.endpoint_url  # closed when the block ends: nothing listens there
    moderator = RekognitionModerator(endpoint, "us-east-1", timeout_s=2)
    with pytest.raises(ModerationUnavailable, match="unreachable"):
        moderator.classify(_solid((128, 128, 128)))
