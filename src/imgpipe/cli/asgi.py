"""The application factory uvicorn's worker processes call: `imgpipe api --workers N`.

uvicorn starts each worker as a fresh (spawned) process that imports this module and
calls ``app_from_environment``, so every process builds its own container from the same
settings (the environment and IMGPIPE_CONFIG) and shares nothing with the others but the
listening socket. It lives in the CLI layer because it names the container, which the API
layer may not import.
"""

from __future__ import annotations

from fastapi import FastAPI

from imgpipe.api.app import create_app
from imgpipe.config import load_settings
from imgpipe.container import build
from imgpipe.telemetry.logs import configure_logging


def app_from_environment() -> FastAPI:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    container = build(settings)
    container.check_protection()
    return create_app(container.deps)
