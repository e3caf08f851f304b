"""``imgpipe images``: operator actions over an owner's images as a whole."""

from __future__ import annotations

from typing import Annotated

import typer

from imgpipe.cli.common import database_sessions, err, settings_or_exit
from imgpipe.domain.access import SINGLE_USER_OWNER

images_app = typer.Typer(help="Images across owners (operator actions).", no_args_is_help=True)


@images_app.command("reassign")
def reassign(
    to_owner: Annotated[str, typer.Option("--to", help="The owner who gets the images.")],
    from_owner: Annotated[
        str,
        typer.Option(
            "--from", help="The owner whose images move (default: single-user mode's owner)."
        ),
    ] = SINGLE_USER_OWNER,
) -> None:
    """Give every image of one owner to another (for example, single-user mode's images
    to the owner of the first API key). Safe to repeat."""
    from imgpipe.services.owners import reassign as reassign_images

    with database_sessions(settings_or_exit(), "images") as sessions:
        try:
            moved = reassign_images(sessions, from_owner, to_owner)
        except ValueError as exc:
            err.print(f"[red]imgpipe images reassign: {exc}[/red]")
            raise typer.Exit(2) from None
    err.print(f"imgpipe: {moved} image(s) moved from owner {from_owner!r} to {to_owner!r}")
