"""Typed route dependencies, read from the app's state (set by ``create_app``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from imgpipe.api.auth import current_principal
from imgpipe.domain.access import SINGLE_USER_OWNER, Principal
from imgpipe.services.deps import ServiceDeps

__all__ = [
    "SINGLE_USER_OWNER",
    "api_base_url",
    "current_owner",
    "current_principal",
    "location_of",
    "service_deps",
]


def service_deps(request: Request) -> ServiceDeps:
    deps: ServiceDeps = request.app.state.deps
    return deps


def api_base_url(request: Request) -> str:
    """The API's public address: API_BASE_URL when set, else what the request reached."""
    configured: str = request.app.state.deps.api_base_url
    return configured or str(request.base_url).rstrip("/")


def location_of(request: Request, path: str) -> str:
    """A ``Location`` for ``path``: absolute under API_BASE_URL when set; otherwise an
    absolute-path reference (RFC 9110 allows it), which stays right behind any proxy
    that rewrites the host."""
    configured: str = request.app.state.deps.api_base_url
    return (configured or request.scope.get("root_path", "")) + path


def staging_dir(request: Request) -> Path:
    path: Path = request.app.state.deps.staging_dir
    return path


def current_owner(principal: Annotated[Principal, Depends(current_principal)]) -> str:
    """The owner the request acts for: its API key's owner, or ``default`` in single-user
    mode (no key exists and IMGPIPE_AUTH is not required). 401 without a valid key,
    429 past the key's rate limit (see api/auth.py)."""
    return principal.owner
