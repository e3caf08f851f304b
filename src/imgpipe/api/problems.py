"""Every error leaves the API as RFC 9457 problem+json with a stable ``code``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from imgpipe.db import errors as db_errors
from imgpipe.domain.errors import ImgpipeError

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
    """Database trouble the engine did not already name (a pool checkout timing out, a
    lock wait, an operational error on a live connection): 503 with Retry-After, never 500.
    db/errors.py says which errors these are and which domain error they become.
    """
    error = db_errors.as_domain_error(exc)
    log.error("database error: %s", type(exc).__name__, exc_info=exc)
    return problem_response(
        error.status, error.code, error.title, error.detail, {"Retry-After": "5"}
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # RFC 9110 15.5.6: a 405 lists the methods the resource does support. Starlette
        # names only the first route it matched, so every route on this path is asked.
        headers["Allow"] = allowed_methods(request)
    return problem_response(exc.status_code, code, str(exc.detail), str(exc.detail), headers)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """The methods some route answers on this path, asked the way the router asks (so
    routers included with a prefix are searched too)."""
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.routes):
            allowed.append(method)
    return ", ".join(allowed)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"parameter": ".".join(str(p) for p in e["loc"][1:]), "message": e["msg"]}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{e['parameter']}: {e['message']}" for e in errors)
    return problem_response(400, "bad_request", "The request is not valid", detail, errors=errors)


# nginx's "client closed request": not an HTTP status anyone receives (the client is
# gone), only what the access log and /metrics record, so aborts are not counted as 500s.
CLIENT_CLOSED_REQUEST = 499


async def _client_disconnect(request: Request, exc: Exception) -> JSONResponse:
    """The client went away mid-request (a cancelled or dropped upload): its doing, not
    an error of ours. Whatever it had sent was already discarded by the route."""
    log.info("client closed the connection mid-request: %s %s", request.method, request.url.path)
    return problem_response(
        CLIENT_CLOSED_REQUEST,
        "client_closed_request",
        "Client closed the request",
        "The connection was closed before the request body arrived whole.",
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return problem_response(
        500, "internal_error", "Internal error", "Something went wrong on our side."
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(ImgpipeError, _imgpipe_error)
    for database_error in db_errors.UNAVAILABLE:
        app.add_exception_handler(database_error, _database_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_exception_handler(Exception, _unexpected)
