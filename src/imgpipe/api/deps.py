"""Typed route dependencies, read from the app's state (set by ``create_app``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from imgpipe.api.auth import current_principal
from imgpipe.domain.access import SINGLE_USER_OWNER, Principal
from imgpipe.services.deps import ServiceDeps

__all__ = ["SINGLE_USER_OWNER", "current_owner", "current_principal", "service_deps"]


def service_deps(request: Request) -> ServiceDeps:
    deps: ServiceDeps = request.app.state.deps
    return deps


def staging_dir(request: Request) -> Path:
    path: Path = request.app.state.deps.staging_dir
    return path


def current_owner(principal: Annotated[Principal, Depends(current_principal)]) -> str:
    """The owner the request acts for: its API key's owner, or ``default`` in single-user
    mode (no key exists and IMGPIPE_AUTH is not required). 401 without a valid key,
    429 past the key's rate limit (see api/auth.py)."""
    return principal.owner
