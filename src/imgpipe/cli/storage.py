"""``imgpipe storage ...``: the durability sweeps, verification and repairs, on demand."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from imgpipe.cli.common import err, require_current_schema, settings_or_exit

storage_app = typer.Typer(
    help="Stored objects: headers, copies, sweeps (docs/storage.md).", no_args_is_help=True
)

if TYPE_CHECKING:
    from imgpipe.container import Container


def _container() -> Container:
    from imgpipe.container import build

    container = build(settings_or_exit())
    require_current_schema(container)
    return container


@storage_app.command("fix-metadata")
def fix_metadata() -> None:
    """Give objects written before their Content-Type, Cache-Control and
    Content-Disposition (S3: each object copied onto itself with the new headers)."""
    from imgpipe.services import durability

    container = _container()
    try:
        changed = durability.fix_metadata(container.deps)
    finally:
        container.close()
    err.print(f"imgpipe storage: {changed} object(s) given their headers")


@storage_app.command("verify")
def verify(
    repair: Annotated[
        bool, typer.Option("--repair", help="Replace a missing or damaged copy from a good one.")
    ] = False,
) -> None:
    """Hash every recorded original in the store (and the replica) against its sha256;
    exit status 1 if any copy is missing or damaged (and was not repaired)."""
    from imgpipe.services import durability

    container = _container()
    try:
        report = durability.verify(container.deps, repair=repair)
    finally:
        container.close()
    for problem in report.problems:
        err.print(f"[yellow]{problem}[/yellow]")
    sys.stdout.write(
        json.dumps(
            {"checked": report.checked, "problems": report.problems, "repaired": report.repaired}
        )
        + "\n"
    )
    unrepaired = len(report.problems) - report.repaired
    raise typer.Exit(1 if unrepaired > 0 else 0)


@storage_app.command("sweep")
def sweep() -> None:
    """Run every storage sweep once now: purge what DELETE_RETENTION_S allows, copy what
    the replica misses, remove orphan originals and stale temporary downloads."""
    from imgpipe.services import durability

    container = _container()
    try:
        report = durability.sweep(container.deps)
    finally:
        container.close()
    for locked in report.locked:
        err.print(f"[yellow]kept by object lock: {locked}[/yellow]")
    sys.stdout.write(json.dumps(report.as_dict()) + "\n")
