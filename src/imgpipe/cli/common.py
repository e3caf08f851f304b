"""What the ``imgpipe`` subcommands share: settings, the database, the schema check.

One module, so subcommands never reach into each other (or into ``cli/main.py``) for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer
from pydantic import ValidationError

from imgpipe.config import Settings, load_settings

if TYPE_CHECKING:  # importing SQLAlchemy costs 0.2 s on every `imgpipe` start, even --help
    from rich.console import Console

    from imgpipe.container import Container
    from imgpipe.db.session import Engine, SessionFactory


class StderrConsole:
    """Rich's console on standard error, made when something is first printed.

    Importing Rich costs about 25 ms, a tenth of a command's start-up; most runs print
    nothing to standard error (a command that succeeds, a batch with --json), and those
    never pay it.
    """

    def __init__(self) -> None:
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            # soft_wrap: Rich wraps at 80 columns when the output is not a terminal (a log
            # file, a pipe), which breaks paths and URLs in two; a terminal still wraps
            # long lines itself.
            self._console = Console(stderr=True, soft_wrap=True)
        return self._console

    def print(self, *objects: Any, **options: Any) -> None:
        self.console.print(*objects, **options)


err = StderrConsole()


def print_table(columns: Iterable[str], rows: Iterable[Iterable[str]]) -> None:
    """A table with a header on standard output, 200 columns wide so that ids and
    timestamps stay on one line in a pipe."""
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=True)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console(width=200).print(table)


def settings_or_exit() -> Settings:
    """The settings, or exit 2 naming each setting that is wrong."""
    try:
        return load_settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = "IMGPIPE_" + "_".join(str(p) for p in error["loc"]).upper()
            err.print(f"[red]imgpipe: setting {name}: {error['msg']}[/red]")
        raise typer.Exit(2) from None


def require_current_schema(container: Container) -> None:
    """Scale-out processes never migrate by themselves: one `imgpipe db upgrade` does."""
    try:
        current = container.schema_is_current()
    except Exception as exc:  # any driver error: say what and where, not a traceback
        err.print(f"[red]imgpipe: cannot reach the database: {exc}[/red]")
        raise typer.Exit(2) from None
    if not current:
        err.print(
            "[red]imgpipe: the database schema is not current; run `imgpipe db upgrade` "
            "(once, before starting API and worker processes).[/red]"
        )
        raise typer.Exit(2)


@contextmanager
def database_sessions(settings: Settings, command: str = "keys") -> Iterator[SessionFactory]:
    """Sessions on the configured database; an embedded SQLite file is migrated first."""
    from imgpipe.db.session import make_sessionmaker
    from imgpipe.resources import open_database

    engine = open_database(settings)
    try:
        ready_schema(engine, settings, command)
        yield make_sessionmaker(engine)
    finally:
        engine.dispose()


def ready_schema(engine: Engine, settings: Settings, command: str) -> None:
    """The embedded SQLite database migrates itself; any other must already be current
    (one `imgpipe db upgrade` migrates it), or the command exits 2 saying so."""
    from imgpipe.resources import migrate, schema_is_current

    if settings.sqlite_path is not None:
        migrate(engine)
    elif not schema_is_current(engine):
        err.print(
            f"[red]imgpipe {command}: the database schema is not current; "
            "run `imgpipe db upgrade`.[/red]"
        )
        raise typer.Exit(2)


def keys_exist(settings: Settings) -> bool:
    """Whether any API key exists (False when the database or its tables do not yet)."""
    from imgpipe.db.session import make_sessionmaker
    from imgpipe.resources import open_database
    from imgpipe.services.keys import any_key_exists

    path = settings.sqlite_path
    if path is not None and not path.exists():
        return False
    engine = open_database(settings)
    try:
        return any_key_exists(make_sessionmaker(engine)) is True  # None: no tables yet
    finally:
        engine.dispose()
