"""Migration 0007 backfills the pHash bands of images processed before it, on SQLite and
PostgreSQL, and the near-duplicate lookup then finds them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from backends import postgres_database
from imgpipe.db import repo
from imgpipe.db.migrate import alembic_config, upgrade
from imgpipe.db.schema import ImageRow
from imgpipe.db.session import make_engine, make_read_sessionmaker
from imgpipe.domain import similarity


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
        yield engine
        engine.dispose()
        return
    with postgres_database() as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


def _insert(engine: Engine, image_id: str, owner: str, metadata: object) -> None:
    now = datetime.now(UTC)
    images = sa.table(
        "images",
        *(sa.column(c) for c in ("id", "owner", "sha256", "bytes", "format", "width")),
        *(sa.column(c) for c in ("height", "frames", "status", "created_at", "updated_at")),
        sa.column("metadata", sa.JSON()),
    )
    with engine.begin() as conn:
        conn.execute(
            images.insert().values(
                id=image_id, owner=owner, sha256="0" * 64, bytes=1, format="jpeg", width=1,
                height=1, frames=1, status="done", created_at=now, updated_at=now,
                metadata=metadata,
            )
        )  # fmt: skip


def test_the_backfill_indexes_existing_hashes(engine: Engine) -> None:
    upgrade(engine, "0005")
    _insert(engine, "img_a", "alice", {"phash": "f0f0f0f0f0f0f0f0", "blurhash": "x"})
    _insert(engine, "img_b", "alice", {"phash": "f0f0f0f0f0f0f0f3"})  # 2 bits away
    _insert(engine, "img_c", "alice", {"phash": "not-a-hash"})
    _insert(engine, "img_d", "alice", {})
    _insert(engine, "img_e", "bob", {"phash": "f0f0f0f0f0f0f0f0"})
    upgrade(engine)

    with engine.connect() as conn:
        rows = {
            r.id: r
            for r in conn.execute(
                sa.select(ImageRow.id, ImageRow.phash, ImageRow.phash_b0, ImageRow.phash_b3)
            )
        }
    assert rows["img_a"].phash == "f0f0f0f0f0f0f0f0"
    assert (rows["img_a"].phash_b0, rows["img_a"].phash_b3) == (0xF0F0, 0xF0F0)
    assert rows["img_b"].phash_b3 == 0xF0F3
    assert rows["img_c"].phash is None and rows["img_d"].phash is None

    value = similarity.parse("f0f0f0f0f0f0f0f0")
    assert value is not None
    probes = [similarity.band_probes(b, 2) for b in similarity.bands(value)]
    with make_read_sessionmaker(engine)() as session:
        found = repo.phash_candidates(session, "alice", probes)
    assert sorted(found) == [("img_a", "f0f0f0f0f0f0f0f0"), ("img_b", "f0f0f0f0f0f0f0f3")]


def test_downgrade_removes_the_columns(engine: Engine) -> None:
    from alembic import command

    upgrade(engine)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
    columns = {c["name"] for c in sa.inspect(engine).get_columns("images")}
    assert "phash" not in columns and "phash_b0" not in columns
