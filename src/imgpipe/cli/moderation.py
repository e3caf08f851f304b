"""``imgpipe moderation``: the review queue, and an operator's approve or reject."""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from imgpipe.cli.common import err, print_table, ready_schema, settings_or_exit

if TYPE_CHECKING:  # SQLAlchemy under it costs 0.2-0.8 s on every `imgpipe` start
    from imgpipe.services.deps import ServiceDeps

moderation_app = typer.Typer(
    help="Moderation: list the review queue, approve or reject images.", no_args_is_help=True
)

STATUSES = ("review", "rejected", "approved", "pending", "error")


@contextmanager
def _deps() -> Iterator[ServiceDeps]:
    from imgpipe.container import build

    settings = settings_or_exit()
    try:
        container = build(settings)
    except ValueError as exc:
        err.print(f"[red]imgpipe moderation: {exc}[/red]")
        raise typer.Exit(2) from None
    try:
        ready_schema(container.db_engine, settings, "moderation")
        yield container.deps
    finally:
        container.close()


@moderation_app.command("list")
def list_(
    status: Annotated[
        str, typer.Option(help=f"One of {', '.join(STATUSES)}: the review queue by default.")
    ] = "review",
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Every owner's images with this moderation status, oldest first."""
    from imgpipe.domain.moderation import ModerationStatus
    from imgpipe.services import moderation

    if status not in STATUSES:
        err.print(f"[red]imgpipe moderation list: --status is one of {', '.join(STATUSES)}[/red]")
        raise typer.Exit(2)
    with _deps() as deps:
        page = moderation.review_queue(deps, ModerationStatus(status), limit, None)
    if as_json:
        rows = [
            {"image_id": i.image.id, "owner": i.owner, "moderation": i.image.moderation}
            for i in page.items
        ]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if not page.items:
        err.print(f"imgpipe: no images with moderation status {status}")
        return
    table_rows = []
    for item in page.items:
        view = item.image.moderation
        labels = ", ".join(f"{x['name']} {x['score']:.2f}" for x in view["labels"])
        table_rows.append(
            (item.image.id, item.owner, view["status"], labels, view["decided_by"] or "")
        )
    print_table(("image", "owner", "status", "labels", "decided by"), table_rows)


def _decide(decision: str, image_ids: list[str], reason: str | None) -> None:
    from imgpipe.domain.errors import NotFound
    from imgpipe.domain.moderation import Decision
    from imgpipe.services import moderation

    who = f"cli:{getpass.getuser()}"
    missing = 0
    with _deps() as deps:
        for image_id in dict.fromkeys(image_ids):
            try:
                view = moderation.decide(deps, image_id, Decision(decision), who, reason)
            except NotFound:
                err.print(f"[red]imgpipe moderation {decision}: no image {image_id}[/red]")
                missing += 1
                continue
            err.print(f"imgpipe: {image_id} {view.moderation['status']}")
    if missing:
        raise typer.Exit(1)


Ids = Annotated[list[str], typer.Argument(metavar="IMAGE_ID...", help="img_... of any owner")]
Reason = Annotated[str | None, typer.Option(help="Why: recorded with the decision.")]


@moderation_app.command("approve")
def approve(image_ids: Ids, reason: Reason = None) -> None:
    """Approve the images: keyless delivery (signed URLs) may serve them."""
    _decide("approve", image_ids, reason)


@moderation_app.command("reject")
def reject(image_ids: Ids, reason: Reason = None) -> None:
    """Reject the images: only their owners and admins can see them."""
    _decide("reject", image_ids, reason)
