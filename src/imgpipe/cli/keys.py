"""``imgpipe keys``: create, list and revoke API keys (SPEC §2, §4)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from imgpipe.cli.common import database_sessions, err, print_table, settings_or_exit
from imgpipe.domain.access import SINGLE_USER_OWNER

keys_app = typer.Typer(help="API keys: each belongs to an owner.", no_args_is_help=True)


@keys_app.command("create")
def create(
    owner: Annotated[str, typer.Option(help="The owner the key acts for.")],
    admin: Annotated[bool, typer.Option("--admin", help="May call the admin endpoints.")] = False,
    callback_url: Annotated[
        str | None, typer.Option(help="Default webhook URL for this key's uploads.")
    ] = None,
) -> None:
    """Make a key: printed alone on stdout, shown once, stored hashed."""
    from imgpipe.services.keys import create_key
    from imgpipe.services.owners import single_user_images

    settings = settings_or_exit()
    with database_sessions(settings) as sessions:
        try:
            key, info = create_key(sessions, owner, admin, callback_url)
        except ValueError as exc:
            err.print(f"[red]imgpipe keys create: {exc}[/red]")
            raise typer.Exit(2) from None
        left = single_user_images(sessions)
    sys.stdout.write(key + "\n")
    err.print(
        f"imgpipe: key {info.id} for owner {info.owner!r}{' (admin)' if admin else ''}; "
        "it is shown only this once."
    )
    if left.count and not left.reachable:
        _tell_about_single_user_images(left.count, info.owner)


def _tell_about_single_user_images(count: int, new_owner: str) -> None:
    """Images uploaded before any key belong to the owner ``default``; from now on only
    a key for that owner sees them, which looks like data loss unless said."""
    target = new_owner if new_owner != SINGLE_USER_OWNER else "NAME"
    err.print(
        f"imgpipe: {count} image(s) uploaded before this key (single-user mode) belong to "
        f"the owner {SINGLE_USER_OWNER!r}; every /v1 request now needs a key, and only a key "
        f"for {SINGLE_USER_OWNER!r} sees them. Either give them to this key's owner:\n"
        f"  imgpipe images reassign --from {SINGLE_USER_OWNER} --to {target}\n"
        f"or reach them with a key of their own:\n"
        f"  imgpipe keys create --owner {SINGLE_USER_OWNER}",
        soft_wrap=True,
    )


@keys_app.command("list")
def list_() -> None:
    """Every key: id, first characters, owner, admin, created, revoked."""
    from imgpipe.services.keys import list_keys

    settings = settings_or_exit()
    with database_sessions(settings) as sessions:
        keys = list_keys(sessions)
    print_table(
        ("id", "key", "owner", "admin", "created", "revoked"),
        (
            (
                key.id,
                key.prefix + "...",
                key.owner,
                "yes" if key.admin else "",
                key.created_at.strftime("%Y-%m-%d %H:%M"),
                key.revoked_at.strftime("%Y-%m-%d %H:%M") if key.revoked_at else "",
            )
            for key in keys
        ),
    )


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="key_... (from list)")],
) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    from imgpipe.domain.errors import NotFound
    from imgpipe.services.keys import revoke_key

    settings = settings_or_exit()
    with database_sessions(settings) as sessions:
        try:
            info = revoke_key(sessions, key_id)
        except NotFound as exc:
            err.print(f"[red]imgpipe keys revoke: {exc.detail}[/red]")
            raise typer.Exit(1) from None
    err.print(f"imgpipe: key {info.id} of {info.owner!r} is revoked")
