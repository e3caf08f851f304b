"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from imgpipe.api.schemas import HealthOut
from imgpipe.domain.errors import ImgpipeError
from imgpipe.storage.base import Protection

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut)
def healthz() -> HealthOut:
    """The process is up and serving."""
    return HealthOut(status="ok")


@router.get("/readyz", response_model=HealthOut)
def readyz(request: Request) -> JSONResponse:
    """Database, storage and broker all answer now; 503 names the one that does not."""
    deps = request.app.state.deps
    checks: dict[str, str] = {}
    try:
        with deps.read_sessions() as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means "not ready"
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        deps.store.check()
        checks["storage"] = "ok"
    except ImgpipeError as exc:
        checks["storage"] = f"error: {exc.code}"
    replica = deps.durability.replica
    if replica is not None:
        try:
            replica.check()
            checks["replica"] = "ok"
        except ImgpipeError as exc:
            checks["replica"] = f"error: {exc.code}"
    try:
        deps.queue.check()
        checks["broker"] = "ok"
    except Exception as exc:  # kombu raises many kinds of connection error
        checks["broker"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    details = {
        f"{name}_protection": value.describe() if isinstance(value, Protection) else value
        for name, value in deps.durability.protection.items()
    }
    body = HealthOut(status="ok" if ready else "unavailable", checks=checks, details=details)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
