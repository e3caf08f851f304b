"""Every error leaves the API as RFC 9457 problem+json with a stable ``code``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from imgpipe.domain.errors import DatabaseUnavailable, ImgpipeError

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://imgpipe.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_type",
    422: "bad_request",
}


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


async def _imgpipe_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ImgpipeError)
    headers = {"Retry-After": "5"} if exc.retryable else {}
    # An answer that may change soon (an image awaiting moderation) must not be cached.
    headers.update(getattr(exc, "response_headers", None) or {})
    if exc.status >= 500:
        log.error("request failed: %s", exc.code, exc_info=exc)
    return problem_response(exc.status, exc.code, exc.title, exc.detail, headers or None)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """Database trouble the db layer did not already name (a pool checkout timing out, a
    lock wait, an operational error on a live connection): 503 with Retry-After, never 500.
    """
    error = DatabaseUnavailable()
    log.error("database error: %s", type(exc).__name__, exc_info=exc)
    return problem_response(
        error.status, error.code, error.title, error.detail, {"Retry-After": "5"}
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    # Keep the framework's headers: a 405 must say which methods are allowed (Allow).
    headers = dict(exc.headers) if exc.headers else None
    return problem_response(exc.status_code, code, str(exc.detail), str(exc.detail), headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"parameter": ".".join(str(p) for p in e["loc"][1:]), "message": e["msg"]}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{e['parameter']}: {e['message']}" for e in errors)
    return problem_response(400, "bad_request", "The request is not valid", detail, errors=errors)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return problem_response(
        500, "internal_error", "Internal error", "Something went wrong on our side."
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(ImgpipeError, _imgpipe_error)
    for database_error in (OperationalError, InterfaceError, PoolTimeout):
        app.add_exception_handler(database_error, _database_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
