"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from imgpipe.api.schemas import HealthOut
from imgpipe.services import health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut)
def healthz() -> HealthOut:
    """The process is up and serving."""
    return HealthOut(status="ok")


@router.get("/readyz", response_model=HealthOut)
def readyz(request: Request) -> JSONResponse:
    """Database, storage and broker all answer now; 503 names the one that does not."""
    report = health.readiness(request.app.state.deps)
    status = "ok" if report.ready else "unavailable"
    body = HealthOut(status=status, checks=report.checks, details=report.details)
    return JSONResponse(body.model_dump(), status_code=200 if report.ready else 503)
