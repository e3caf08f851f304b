"""Typed route dependencies, read from the app's state (set by ``create_app``)."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request

from imgpipe.services.deps import ServiceDeps

SINGLE_USER_OWNER = "default"


def service_deps(request: Request) -> ServiceDeps:
    deps: ServiceDeps = request.app.state.deps
    return deps


def staging_dir(request: Request) -> Path:
    path: Path = request.app.state.deps.staging_dir
    return path


def current_owner(request: Request) -> str:
    # Single-user mode (SPEC §4): no keys exist and the bind is loopback, so every
    # request acts for one owner. API keys and owners arrive with their own release.
    return SINGLE_USER_OWNER
