"""The render source: the 1920x1080 copy the worker keeps so that renders need not decode
the original. Real SQLite, a real local store, generated photos, the real use cases."""

from __future__ import annotations

import functools
import hashlib
import io
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import pyvips
from PIL import ExifTags, Image
from prometheus_client import REGISTRY

from imgpipe.domain.errors import StorageUnavailable
from imgpipe.domain.render_options import RenderConfig
from imgpipe.engine.render_source import SOURCE_VERSION
from imgpipe.jobs.messages import ProcessImage
from imgpipe.services import ingest, manage
from imgpipe.services.deps import ServiceDeps
from imgpipe.services.process import process_image
from imgpipe.services.queries import get_image
from imgpipe.services.render import RenderRequest, render_image
from imgpipe.services.render_runtime import RenderRuntime
from imgpipe.storage import keys
from imgpipe.storage.base import ObjectMeta
from imgpipe.storage.local import LocalStore

from .sqlite_deps import NoQueue, sqlite_deps

OWNER = "alice"


@pytest.fixture
def deps(tmp_path: Path) -> Iterator[ServiceDeps]:
    with sqlite_deps(
        tmp_path,
        store=LocalStore(tmp_path / "objects"),
        queue=NoQueue(),
        render=RenderConfig(allow_unsigned=True),
    ) as deps:
        yield deps


def photo(
    width: int, height: int, seed: int, orientation: int = 1, *, progressive: bool = False
) -> bytes:
    """Detail at every scale (smooth gradients, edges, noise), like a photo: a red block
    marks the stored top-left corner so orientation shows after any transform."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = np.stack(
        [
            128 + 100 * np.sin(x / 37.0) * np.cos(y / 23.0),
            (x * 255 / width + 60 * ((x // 90 + y // 90) % 2)) % 256,
            (y * 255 / height),
        ],
        axis=-1,
    ) + rng.normal(0, 12, size=(height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    image.paste((255, 0, 0), (0, 0, width // 4, height // 4))
    exif = Image.Exif()
    if orientation != 1:
        exif[ExifTags.Base.Orientation] = orientation
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif, progressive=progressive)
    return out.getvalue()


@functools.cache
def large_progressive() -> bytes:
    """A 10 MP progressive JPEG: libjpeg decodes one in full whatever the scale, so, being
    larger than 3840x2160, it gets a large copy (3600x2160) for renders like w=2400."""
    return photo(4000, 2400, seed=10, progressive=True)


def rgba_png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (width, height), (10, 120, 200, 128)).save(out, "PNG")
    return out.getvalue()


def renders_made(source: str) -> float:
    value = REGISTRY.get_sample_value("imgpipe_renders_made_total", {"source": source})
    return value or 0.0


def sources_made(copy: str, by: str) -> float:
    """Render sources stored so far: ``copy`` base or large, ``by`` worker or render."""
    labels = {"copy": copy, "by": by}
    value = REGISTRY.get_sample_value("imgpipe_render_sources_made_total", labels)
    return value or 0.0


def upload(deps: ServiceDeps, data: bytes, *, process: bool = True) -> tuple[str, str]:
    """Ingest (and process) an image: its id and the original's sha256."""
    deps.staging_dir.mkdir(parents=True, exist_ok=True)
    sha = hashlib.sha256(data).hexdigest()
    path = deps.staging_dir / sha
    path.write_bytes(data)
    image = ingest.ingest(deps, ingest.StagedUpload(path, len(data), sha), OWNER)
    if process:
        process_image(deps, ProcessImage(image.id))
    return image.id, sha


def render(deps: ServiceDeps, image_id: str, query: str) -> tuple[bytes, str]:
    """The rendered bytes and the ETag, through the whole use case (cache included)."""
    pairs = [tuple(pair.split("=", 1)) for pair in query.split("&")]
    request = RenderRequest(image_id, f"/v1/render/{image_id}", pairs, None)  # type: ignore[arg-type]
    response = render_image(deps, OWNER, request)
    return response.data, response.etag


def source_key(sha: str) -> str:
    return keys.render_source(sha, SOURCE_VERSION)


def large_key(sha: str) -> str:
    return keys.render_source(sha, SOURCE_VERSION, large=True)


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)


def test_the_worker_keeps_an_upright_metadata_free_copy_of_a_large_photo(
    deps: ServiceDeps,
) -> None:
    # Stored 2400 wide, 3600 high with orientation 6: upright it is 3600x2400.
    _, sha = upload(deps, photo(2400, 3600, seed=1, orientation=6))
    copy = pyvips.Image.new_from_buffer(deps.store.get_bytes(source_key(sha)), "")
    assert (copy.width, copy.height) == (1620, 1080)  # upright, fitted in 1920x1080
    assert copy.get_typeof("exif-data") == 0 and copy.get_typeof("icc-profile-data") == 0
    # The red block stored top-left is top-right once upright (orientation 6 turns it).
    pixels = decoded(deps.store.get_bytes(source_key(sha)))
    red, green, _ = pixels[10:40, -40:-10].mean(axis=(0, 1))
    assert red > 200 and green < 60


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(photo(1600, 1200, seed=2), id="not-much-larger-than-the-copy"),
    ],
)
def test_no_copy_where_it_would_save_nothing(deps: ServiceDeps, data: bytes) -> None:
    image_id, sha = upload(deps, data)
    assert not deps.store.exists(source_key(sha))
    assert render(deps, image_id, "w=300")[0]  # renders still work, from the original
    assert not deps.store.exists(source_key(sha))


def test_an_image_with_alpha_gets_a_lossless_copy_that_keeps_it(deps: ServiceDeps) -> None:
    image_id, sha = upload(deps, rgba_png(4000, 3000))
    copy = pyvips.Image.new_from_buffer(deps.store.get_bytes(source_key(sha)), "")
    assert copy.get("vips-loader") == "pngload_buffer"
    assert (copy.width, copy.height, copy.bands) == (1440, 1080, 4)
    before = renders_made("source")
    data, _ = render(deps, image_id, "w=300&format=png")
    assert renders_made("source") == before + 1
    out = pyvips.Image.new_from_buffer(data, "")
    assert (out.width, out.bands) == (300, 4)
    alpha = out.extract_band(3)
    assert abs(alpha.avg() - 128) < 2  # the transparency survived the copy


def test_renders_from_the_copy_look_like_renders_from_the_original(
    deps: ServiceDeps, tmp_path: Path
) -> None:
    data = photo(4800, 3200, seed=3)
    image_id, _ = upload(deps, data)
    before = renders_made("source")
    from_copy, _ = render(deps, image_id, "w=800&h=600&format=png")
    assert renders_made("source") == before + 1
    original_deps = replace(
        deps,
        store=LocalStore(tmp_path / "other"),
        render=RenderConfig(allow_unsigned=True, intermediate=False),
    )
    original_deps.store.put_bytes(keys.original(hashlib.sha256(data).hexdigest()), data)
    from_original, _ = render(original_deps, image_id, "w=800&h=600&format=png")
    a, b = decoded(from_copy), decoded(from_original)
    assert a.shape == b.shape == (533, 800, 3)
    # Lossless output, so this is the copy's own cost (and two resamples instead of one):
    # a PSNR over 36 dB between them; a copy turned, shifted or off in colour is under 20.
    psnr = 10 * np.log10(255**2 / float(np.mean((a - b) ** 2)))
    assert psnr > 36, psnr


def test_a_render_larger_than_every_copy_reads_the_original(deps: ServiceDeps) -> None:
    image_id, _ = upload(deps, photo(4800, 3200, seed=4))
    before = renders_made("original")
    data, _ = render(deps, image_id, "w=3600&format=png")  # the large copy is 3240 wide
    assert renders_made("original") == before + 1
    assert Image.open(io.BytesIO(data)).size == (3600, 2400)


def test_a_missing_copy_is_made_by_the_render_with_the_workers_bytes(
    deps: ServiceDeps,
) -> None:
    image_id, sha = upload(deps, photo(3600, 2400, seed=5, orientation=8))
    made_by_worker = deps.store.get_bytes(source_key(sha))
    first, etag = render(deps, image_id, "w=640&h=480&fit=cover&format=webp")

    # Lost (or never made: an image processed before copies existed), with the cache.
    deps.store.delete_prefix(keys.renders_prefix(sha))
    again, etag_again = render(deps, image_id, "w=640&h=480&fit=cover&format=webp")
    assert deps.store.get_bytes(source_key(sha)) == made_by_worker
    assert (again, etag_again) == (first, etag)  # a URL keeps its bytes and its ETag


def test_a_render_before_processing_makes_the_copy_the_worker_would(deps: ServiceDeps) -> None:
    data = photo(3600, 2400, seed=6)
    image_id, sha = upload(deps, data, process=False)
    early, _ = render(deps, image_id, "w=500&format=jpeg")
    made_by_render = deps.store.get_bytes(source_key(sha))
    process_image(deps, ProcessImage(image_id))
    assert deps.store.get_bytes(source_key(sha)) == made_by_render
    assert Image.open(io.BytesIO(early)).size == (500, 333)


def test_a_damaged_copy_is_made_again(deps: ServiceDeps) -> None:
    image_id, sha = upload(deps, photo(3600, 2400, seed=7))
    good = deps.store.get_bytes(source_key(sha))
    deps.store.put_bytes(source_key(sha), good[: len(good) // 2])  # truncated
    data, _ = render(deps, image_id, "w=300&format=png")
    assert Image.open(io.BytesIO(data)).size == (300, 200)
    assert deps.store.get_bytes(source_key(sha)) == good


def test_with_the_setting_off_no_copy_is_written_or_read(deps: ServiceDeps) -> None:
    off = replace(deps, render=RenderConfig(allow_unsigned=True, intermediate=False))
    image_id, sha = upload(off, photo(3600, 2400, seed=8))
    data, _ = render(off, image_id, "w=300&format=png")
    assert Image.open(io.BytesIO(data)).size == (300, 200)
    assert not off.store.exists(source_key(sha))


def test_a_render_larger_than_the_copy_makes_and_then_reads_a_missing_large_copy(
    deps: ServiceDeps,
) -> None:
    """w=2400 of a 24 MP photo does not fit the 1920x1080 copy: the large copy (fitted in
    3840x2160) does. Where it is missing (an image processed before the worker made it,
    or the copy lost), the first such render makes it under its own key, later ones read
    it."""
    image_id, sha = upload(deps, photo(6000, 4000, seed=9))
    deps.store.delete(large_key(sha))
    assert deps.store.exists(source_key(sha))
    before, made = renders_made("source"), sources_made("large", "render")
    first, _ = render(deps, image_id, "w=2400&format=png")
    copy = pyvips.Image.new_from_buffer(deps.store.get_bytes(large_key(sha)), "")
    assert (copy.width, copy.height) == (3240, 2160)
    assert renders_made("source") == before + 1
    assert sources_made("large", "render") == made + 1
    again, _ = render(deps, image_id, "w=2400&q=70&format=webp")
    assert renders_made("source") == before + 2
    assert sources_made("large", "render") == made + 1  # read, not made again
    assert pyvips.Image.new_from_buffer(again, "").width == 2400
    assert pyvips.Image.new_from_buffer(first, "").width == 2400
    # A render that fits the small copy still reads that one, never the large one.
    small, _ = render(deps, image_id, "w=800&format=png")
    assert pyvips.Image.new_from_buffer(small, "").width == 800


def test_the_worker_makes_the_large_copy_so_the_first_w2400_render_reads_it(
    deps: ServiceDeps,
) -> None:
    made_by_worker = sources_made("large", "worker")
    image_id, sha = upload(deps, large_progressive())
    assert sources_made("large", "worker") == made_by_worker + 1
    copy = pyvips.Image.new_from_buffer(deps.store.get_bytes(large_key(sha)), "")
    assert (copy.width, copy.height) == (3600, 2160)  # fitted in 3840x2160

    made_by_render, from_source = sources_made("large", "render"), renders_made("source")
    first, etag = render(deps, image_id, "w=2400&format=webp")
    assert sources_made("large", "render") == made_by_render  # read, not made
    assert renders_made("source") == from_source + 1
    assert pyvips.Image.new_from_buffer(first, "").width == 2400

    # The same copy, and so the same render, as where a render had to make the copy
    # itself: the copy lost with the image's renders, a new process renders the URL.
    workers_copy = deps.store.get_bytes(large_key(sha))
    deps.store.delete_prefix(keys.renders_prefix(sha))
    again, etag_again = render(
        replace(deps, render_runtime=RenderRuntime()), image_id, "w=2400&format=webp"
    )
    assert sources_made("large", "render") == made_by_render + 1
    assert deps.store.get_bytes(large_key(sha)) == workers_copy
    assert (again, etag_again) == (first, etag)  # a URL keeps its bytes and its ETag


def test_a_job_run_again_leaves_the_stored_large_copy_as_it_is(deps: ServiceDeps) -> None:
    image_id, sha = upload(deps, large_progressive())
    stored = deps.store.get_bytes(large_key(sha))
    made = sources_made("large", "worker")
    manage.reprocess(deps, image_id, OWNER, None)
    process_image(deps, ProcessImage(image_id))
    assert get_image(deps, image_id, OWNER).status == "done"
    assert sources_made("large", "worker") == made  # found in the store: not made again
    assert deps.store.get_bytes(large_key(sha)) == stored


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(photo(3000, 2000, seed=11, progressive=True), id="fits-the-large-box"),
        pytest.param(photo(3600, 2400, seed=12), id="baseline-not-much-larger"),
    ],
)
def test_an_original_without_a_large_copy_gets_none_from_the_worker(
    deps: ServiceDeps, data: bytes
) -> None:
    made = sources_made("large", "worker")
    image_id, sha = upload(deps, data)
    assert deps.store.exists(source_key(sha))  # it has the base copy
    assert not deps.store.exists(large_key(sha))
    assert sources_made("large", "worker") == made
    before = renders_made("original")
    rendered, _ = render(deps, image_id, "w=2400&format=png")  # from the original, as before
    assert renders_made("original") == before + 1
    assert pyvips.Image.new_from_buffer(rendered, "").width == 2400
    assert not deps.store.exists(large_key(sha))


def test_with_the_setting_off_the_worker_makes_no_large_copy(deps: ServiceDeps) -> None:
    off = replace(deps, render=RenderConfig(allow_unsigned=True, intermediate=False))
    made = sources_made("large", "worker")
    image_id, sha = upload(off, large_progressive())
    assert get_image(off, image_id, OWNER).status == "done"
    assert not off.store.exists(large_key(sha)) and not off.store.exists(source_key(sha))
    assert sources_made("large", "worker") == made


def test_not_eager_the_first_render_that_needs_the_large_copy_makes_it(
    deps: ServiceDeps,
) -> None:
    # RENDER_LARGE_SOURCE_EAGER=false: the worker keeps its CPU, and the first w=2400
    # render pays for the copy instead; the same bytes either way.
    lazy = replace(deps, render=RenderConfig(allow_unsigned=True, large_source_eager=False))
    made = sources_made("large", "worker")
    image_id, sha = upload(lazy, large_progressive())
    assert get_image(lazy, image_id, OWNER).status == "done"
    assert lazy.store.exists(source_key(sha)) and not lazy.store.exists(large_key(sha))
    assert sources_made("large", "worker") == made
    made_by_render = sources_made("large", "render")
    rendered, _ = render(lazy, image_id, "w=2400&format=png")
    assert pyvips.Image.new_from_buffer(rendered, "").width == 2400
    assert lazy.store.exists(large_key(sha))
    assert sources_made("large", "render") == made_by_render + 1


class NoLargeCopies(LocalStore):
    """A real local store that refuses to write a large render source while ``refuse``
    (a full disk, a bucket policy): what the worker meets when storing its copy fails."""

    refuse = True

    def put_bytes(self, key: str, data: bytes, meta: ObjectMeta | None = None) -> None:
        if self.refuse and key.endswith("-large.jpg"):
            raise StorageUnavailable("injected: the store answered 503")
        super().put_bytes(key, data, meta)


def test_a_large_copy_the_worker_cannot_store_fails_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = NoLargeCopies(tmp_path / "objects")
    with sqlite_deps(
        tmp_path, store=store, queue=NoQueue(), render=RenderConfig(allow_unsigned=True)
    ) as deps:
        made = sources_made("large", "worker")
        with caplog.at_level(logging.WARNING, logger="imgpipe.services.process"):
            image_id, sha = upload(deps, large_progressive())
        view = get_image(deps, image_id, OWNER)
        assert view.status == "done"
        assert all(variant.status == "done" for variant in view.variants.values())
        assert "large render source not made" in caplog.text
        assert sources_made("large", "worker") == made and not store.exists(large_key(sha))
        # The first render that needs the copy makes it, as it did before the worker did.
        store.refuse = False
        made_by_render = sources_made("large", "render")
        rendered, _ = render(deps, image_id, "w=2400&format=png")
        assert pyvips.Image.new_from_buffer(rendered, "").width == 2400
        assert sources_made("large", "render") == made_by_render + 1
        assert store.exists(large_key(sha))
