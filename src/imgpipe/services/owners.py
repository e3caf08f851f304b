"""Owners' images as a whole: how many an owner has, and handing them to another owner.

The move that matters is the first key's. Without keys, every upload belongs to the
single-user owner ``default``; once a key exists, only a key for ``default`` sees those
images. ``imgpipe keys create`` says so, and ``imgpipe images reassign`` moves them.
"""

from __future__ import annotations

from dataclasses import dataclass

from imgpipe.db import keys as keys_db
from imgpipe.db import repo
from imgpipe.db.session import SessionFactory
from imgpipe.domain.access import SINGLE_USER_OWNER, check_owner


@dataclass(frozen=True, slots=True)
class SingleUserImages:
    """Images left from single-user mode, and whether any live key can see them."""

    count: int
    reachable: bool


def single_user_images(sessions: SessionFactory) -> SingleUserImages:
    with sessions() as session:
        return SingleUserImages(
            repo.count_images(session, SINGLE_USER_OWNER),
            keys_db.has_active_key(session, SINGLE_USER_OWNER),
        )


def reassign(sessions: SessionFactory, from_owner: str, to_owner: str) -> int:
    """Move every image of ``from_owner`` to ``to_owner`` in one transaction; the number
    moved. Repeating it moves nothing more."""
    check_owner(from_owner)
    check_owner(to_owner)
    if from_owner == to_owner:
        raise ValueError(f"--from and --to are both {from_owner!r}")
    with sessions.begin() as session:
        return repo.reassign_owner(session, from_owner, to_owner)
