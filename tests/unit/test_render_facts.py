"""Renders read only what they need: the original's header facts live on the image's row
(recorded at upload, migration 0010), so a render made from the render source never
reads the original. Real SQLite, a real local store that counts reads, the real use cases."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from PIL import Image

from backends import postgres_database
from imgpipe.db.migrate import alembic_config, upgrade
from imgpipe.db.schema import ImageRow
from imgpipe.db.session import make_engine
from imgpipe.domain.errors import NotFound
from imgpipe.domain.media import (
    ImageFormat,
    Limits,
    ProbeCache,
    ProbeResult,
    probe_facts,
    probe_from_facts,
)
from imgpipe.domain.render_options import RenderConfig
from imgpipe.engine.probe import probe
from imgpipe.engine.render_source import SOURCE_VERSION
from imgpipe.jobs.messages import ProcessImage
from imgpipe.services.deps import ServiceDeps
from imgpipe.services.process import process_image
from imgpipe.services.render_runtime import RenderRuntime
from imgpipe.storage import keys
from imgpipe.storage.local import LocalStore

from .sqlite_deps import NoQueue, sqlite_deps
from .test_render_source import large_progressive, photo, render, upload

SMALL = "w=800&h=600&format=webp"  # fits in the 1920x1080 render source
LARGE = "w=2400&format=png"  # larger than the source: reads the original


class CountingStore(LocalStore):
    """A local store that remembers every key read (whole, streamed, or as a file)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: list[str] = []

    def get_bytes(self, key: str) -> bytes:
        self.reads.append(key)
        return super().get_bytes(key)

    def iter_bytes(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        self.reads.append(key)
        return super().iter_bytes(key, chunk_size)

    @contextmanager
    def local_file(self, key: str) -> Iterator[Path]:
        self.reads.append(key)
        with super().local_file(key) as path:
            yield path

    def original_reads(self, sha: str) -> int:
        return self.reads.count(keys.original(sha))


@pytest.fixture
def deps(tmp_path: Path) -> Iterator[ServiceDeps]:
    with sqlite_deps(
        tmp_path,
        store=CountingStore(tmp_path / "objects"),
        queue=NoQueue(),
        render=RenderConfig(allow_unsigned=True),
    ) as deps:
        yield deps


def cold(deps: ServiceDeps, **changes: Any) -> ServiceDeps:
    """The same database and store as a new process sees them: empty caches."""
    return replace(deps, render_runtime=RenderRuntime(), probes=ProbeCache(), **changes)


def row_facts(deps: ServiceDeps, image_id: str) -> dict[str, object] | None:
    with deps.read_sessions() as session:
        return session.get(ImageRow, image_id).probe  # type: ignore[union-attr]


def forget_facts(deps: ServiceDeps, image_id: str) -> None:
    """The row as an image uploaded before 0010 has it."""
    with deps.sessions.begin() as session:
        session.execute(sa.update(ImageRow).where(ImageRow.id == image_id).values(probe=None))


def test_the_upload_records_every_fact_the_probe_read(deps: ServiceDeps, tmp_path: Path) -> None:
    data = photo(3600, 2400, seed=21, orientation=6)
    image_id, _ = upload(deps, data, process=False)
    (tmp_path / "p.jpg").write_bytes(data)
    facts = probe(tmp_path / "p.jpg", deps.limits)
    assert row_facts(deps, image_id) == probe_facts(facts)
    assert probe_from_facts(row_facts(deps, image_id)) == facts


def forget_renders(deps: ServiceDeps, sha: str) -> None:
    """Drop the image's cached renders, keeping its render source."""
    for key, _ in list(deps.store.list_keys(keys.renders_prefix(sha))):
        if "/source-v" not in key:
            deps.store.delete(key)


def test_a_render_from_the_source_reads_no_original(deps: ServiceDeps) -> None:
    store: CountingStore = deps.store  # type: ignore[assignment]
    image_id, sha = upload(deps, photo(3600, 2400, seed=22, orientation=6))
    store.reads.clear()

    data, _ = render(cold(deps), image_id, SMALL)
    assert Image.open(io.BytesIO(data)).size == (400, 600)  # upright: portrait
    assert store.original_reads(sha) == 0

    render(cold(deps), image_id, LARGE)  # too large for the source: the original it is
    assert store.original_reads(sha) == 1


def test_the_job_fetches_the_original_once_for_its_variants_and_its_large_copy(
    deps: ServiceDeps,
) -> None:
    """On S3 a fetch is a download of the whole original: the large copy, made after the
    job settles, reads the file the variants were made from. Its w=2400 render then reads
    no original at all."""
    store: CountingStore = deps.store  # type: ignore[assignment]
    image_id, sha = upload(deps, large_progressive())
    assert deps.store.exists(keys.render_source(sha, SOURCE_VERSION, large=True))
    assert store.original_reads(sha) == 1
    store.reads.clear()
    data, _ = render(cold(deps), image_id, "w=2400&format=webp")
    assert Image.open(io.BytesIO(data)).size == (2400, 1440)
    assert store.original_reads(sha) == 0


def test_without_its_original_an_image_still_renders_from_its_source(deps: ServiceDeps) -> None:
    image_id, sha = upload(deps, photo(3600, 2400, seed=23))
    deps.store.delete(keys.original(sha))
    fresh = cold(deps)
    data, _ = render(fresh, image_id, SMALL)
    assert Image.open(io.BytesIO(data)).size == (800, 533)
    with pytest.raises(NotFound):  # the store's 404, as before
        render(fresh, image_id, LARGE)


def test_a_row_without_facts_renders_and_is_back_filled(deps: ServiceDeps) -> None:
    store: CountingStore = deps.store  # type: ignore[assignment]
    image_id, sha = upload(deps, photo(3600, 2400, seed=24, orientation=8))
    recorded = row_facts(deps, image_id)
    expected, etag = render(deps, image_id, SMALL)  # made from the recorded facts
    forget_facts(deps, image_id)
    forget_renders(deps, sha)
    store.reads.clear()

    first = cold(deps)
    assert render(first, image_id, SMALL) == (expected, etag)  # probed, as before 0010
    assert store.original_reads(sha) == 1  # the probe; the pixels came from the source
    assert row_facts(deps, image_id) == recorded

    second = cold(deps)
    render(second, image_id, "w=640&h=480&format=webp")
    assert store.original_reads(sha) == 1  # the next process reads the facts instead


def test_the_worker_fills_in_facts_a_row_lacks(deps: ServiceDeps) -> None:
    image_id, _ = upload(deps, photo(2400, 1600, seed=25), process=False)
    recorded = row_facts(deps, image_id)
    forget_facts(deps, image_id)
    process_image(deps, ProcessImage(image_id))
    assert row_facts(deps, image_id) == recorded


@pytest.mark.parametrize(
    "limits",
    [
        Limits(50_000_000, max_pixels=5_000_000, max_frames=10),
        Limits(50_000_000, 100_000_000, 10, max_decode_bytes=10_000_000),
    ],
)
def test_a_lowered_limit_still_refuses_the_render(deps: ServiceDeps, limits: Limits) -> None:
    store: CountingStore = deps.store  # type: ignore[assignment]
    image_id, sha = upload(deps, photo(3600, 2400, seed=26))
    store.reads.clear()
    with pytest.raises(NotFound, match="cannot be rendered"):
        render(cold(deps, limits=limits), image_id, SMALL)
    assert store.original_reads(sha) == 0  # refused from the facts


def test_facts_from_another_version_are_not_trusted() -> None:
    facts = probe_facts(ProbeResult(ImageFormat.PNG, 10, 20, has_alpha=True, bands=4))
    assert probe_from_facts(facts) == ProbeResult(ImageFormat.PNG, 10, 20, has_alpha=True, bands=4)
    assert probe_from_facts(None) is None
    assert probe_from_facts({**facts, "extra": 1}) is None
    assert probe_from_facts({k: v for k, v in facts.items() if k != "bands"}) is None
    assert probe_from_facts({**facts, "format": "nope"}) is None
    assert probe_from_facts({**facts, "width": "10"}) is None
    assert probe_from_facts({**facts, "width": 0}) is None


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_the_migration_adds_and_removes_the_column(tmp_path: Path, database: str) -> None:
    with ExitStack() as stack:
        url = f"sqlite:///{tmp_path / 'm.db'}"
        if database == "postgres":
            url = stack.enter_context(postgres_database())
        migrate_up_and_down(make_engine(url))


def migrate_up_and_down(engine: sa.Engine) -> None:
    from alembic import command

    try:
        upgrade(engine, "0009")
        assert "probe" not in {c["name"] for c in sa.inspect(engine).get_columns("images")}
        upgrade(engine)
        assert "probe" in {c["name"] for c in sa.inspect(engine).get_columns("images")}
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0009")
        assert "probe" not in {c["name"] for c in sa.inspect(engine).get_columns("images")}
    finally:
        engine.dispose()
