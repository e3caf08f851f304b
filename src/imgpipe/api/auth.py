"""Who is calling: the bearer key, resolved to a Principal, and rate limited.

Every route that acts for an owner depends on ``current_principal`` (through
``api.deps.current_owner``), so auth and rate limits apply to all of them at once.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from imgpipe.api import ratelimit
from imgpipe.api.problems import problem_response
from imgpipe.domain.access import Principal
from imgpipe.domain.errors import AdminRequired, Unauthorized
from imgpipe.services.deps import ServiceDeps
from imgpipe.services.keys import Authenticator


def bearer_token(authorization: str | None) -> str | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("The Authorization header must be 'Bearer <api key>'.")
    return token.strip()


# Declares the scheme in the OpenAPI document (the "Authorize" button of /docs); the
# header itself is parsed below, so a bad one is our 401 problem, not FastAPI's 403.
_BEARER = HTTPBearer(auto_error=False, description="An API key: `imgpipe keys create`.")


def current_principal(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)] = None,
) -> Principal:
    deps: ServiceDeps = request.app.state.deps
    authenticator: Authenticator = request.app.state.authenticator
    principal = authenticator.authenticate(bearer_token(request.headers.get("authorization")))
    ratelimit.check(request, deps, principal)
    return principal


def require_admin(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not principal.admin:
        raise AdminRequired("This endpoint needs a key made with `imgpipe keys create --admin`.")
    return principal


async def _unauthorized(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Unauthorized)
    headers = {"WWW-Authenticate": 'Bearer realm="imgpipe"'}
    return problem_response(exc.status, exc.code, exc.title, exc.detail, headers)


def install(app: FastAPI, deps: ServiceDeps) -> None:
    app.state.authenticator = Authenticator(deps.read_sessions, deps.access.auth_required)
    app.add_exception_handler(Unauthorized, _unauthorized)
    ratelimit.install(app)
