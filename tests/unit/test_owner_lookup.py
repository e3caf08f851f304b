"""Another owner's image and a missing one take the same query path (issue 15, timing).

Timing itself is too noisy to assert on a shared machine; what makes the two answers take
the same time is that they run the same SQL and load nothing: this is what is checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from imgpipe.db import repo
from imgpipe.db.schema import ImageRow, VariantRow
from imgpipe.domain.errors import NotFound
from imgpipe.services import queries

from .sqlite_deps import sqlite_deps


def test_another_owners_image_and_a_missing_one_run_the_same_statements(
    tmp_path: Path,
) -> None:
    with sqlite_deps(tmp_path, store=None, queue=None) as deps:
        with deps.sessions.begin() as session:
            session.add(
                ImageRow(
                    id="img_alice",
                    owner="alice",
                    sha256="0" * 64,
                    bytes=1,
                    format="png",
                    width=1,
                    height=1,
                    status="done",
                    variants=[
                        VariantRow(
                            name="thumbnail",
                            profile="thumbnail",
                            profile_digest="d",
                            format="webp",
                            status="done",
                            attempts=1,
                        )
                    ],
                )
            )
        engine: Any = deps.read_sessions.kw["bind"]
        statements: list[str] = []

        def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        event.listen(engine, "before_cursor_execute", record)

        def run(image_id: str) -> list[str]:
            statements.clear()
            with pytest.raises(NotFound):
                queries.get_image(deps, image_id, "bob")
            return [s for s in statements if s.lstrip().upper().startswith("SELECT")]

        other_owners = run("img_alice")
        missing = run("img_missing")
        assert other_owners == missing and len(missing) == 1, (other_owners, missing)
        with deps.read_sessions() as session:
            assert repo.get_image(session, "img_alice", "alice") is not None
