"""``imgpipe dlq``: list and retry dead-lettered jobs (SPEC §2)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from imgpipe.cli.common import database_sessions, err, print_table, settings_or_exit

dlq_app = typer.Typer(
    help="Dead letters: jobs whose variants ran out of attempts.", no_args_is_help=True
)


@dlq_app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
    include_retried: Annotated[
        bool, typer.Option("--all", help="Also show the ones already retried.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 100,
) -> None:
    """Dead-lettered jobs, newest first, with each attempt's history (--json)."""
    from imgpipe.services.dead_letters import list_dead_letters

    with database_sessions(settings_or_exit(), "dlq") as sessions:
        entries = list_dead_letters(sessions, include_retried, limit)
    if as_json:
        from pydantic import TypeAdapter

        from imgpipe.services.dead_letters import DeadLetterView

        adapter = TypeAdapter(list[DeadLetterView])
        sys.stdout.write(json.dumps(adapter.dump_python(entries, mode="json"), indent=2) + "\n")
        return
    if not entries:  # an empty table says nothing a sentence does not
        err.print("imgpipe: no dead letters" + ("" if include_retried else " waiting for a retry"))
        return
    print_table(
        ("id", "image", "owner", "variants", "attempts", "code", "error", "created"),
        (
            (
                entry.id,
                entry.image_id,
                entry.owner,
                ",".join(entry.variants),
                str(entry.attempts),
                entry.error_code,
                entry.error,
                entry.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            )
            for entry in entries
        ),
    )


@dlq_app.command("retry")
def retry(
    ids: Annotated[list[str], typer.Argument(metavar="ID...", help="dlq_... (from list)")],
) -> None:
    """Give the jobs' failed variants fresh attempts (picked up within RECONCILE_S)."""
    from imgpipe.services.dead_letters import retry as retry_dead_letters

    with database_sessions(settings_or_exit(), "dlq") as sessions:
        result = retry_dead_letters(sessions, ids)
    for entry in result.retried:
        err.print(f"imgpipe: {entry.id} requeued ({entry.image_id}: {', '.join(entry.variants)})")
    for unknown in result.unknown:
        err.print(f"[red]imgpipe dlq retry: no dead letter {unknown}[/red]")
    if result.unknown:
        raise typer.Exit(1)
