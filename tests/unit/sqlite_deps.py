"""ServiceDeps over a fresh, migrated database (a SQLite file unless told): what the use-case
tests run against."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from imgpipe.db.migrate import upgrade
from imgpipe.db.session import make_engine, make_read_sessionmaker, make_sessionmaker
from imgpipe.domain.media import Limits
from imgpipe.domain.profiles import ProfileSet
from imgpipe.jobs.messages import ProcessImage
from imgpipe.services.deps import ServiceDeps


@contextmanager
def sqlite_deps(tmp_path: Path, **fields: Any) -> Iterator[ServiceDeps]:
    """Real sessions on ``tmp_path/imgpipe.db``; ``fields`` set or override the rest
    (``store`` and ``queue`` have no default: each test says what it uses)."""
    with database_deps(f"sqlite:///{tmp_path / 'imgpipe.db'}", tmp_path, **fields) as deps:
        yield deps


@contextmanager
def database_deps(url: str, tmp_path: Path, **fields: Any) -> Iterator[ServiceDeps]:
    """``sqlite_deps`` on any database URL, migrated to head first."""
    engine = make_engine(url)
    upgrade(engine)
    defaults: dict[str, Any] = {
        "profiles": ProfileSet.builtin(),
        "limits": Limits(50_000_000, 100_000_000, 10),
        "process_timeout_s": 60,
        "staging_dir": tmp_path / "staging",
        "signing_key": b"k",
    }
    try:
        yield ServiceDeps(
            sessions=make_sessionmaker(engine),
            read_sessions=make_read_sessionmaker(engine),
            **{**defaults, **fields},
        )
    finally:
        engine.dispose()


class NoQueue:
    """A queue that takes messages and drops them: for tests that run jobs themselves."""

    def enqueue(self, message: ProcessImage, recover: bool = False) -> None:
        pass

    def check(self) -> None:
        pass

    def depth(self) -> int | None:
        return 0
