"""The FastAPI application, built around a container."""

from __future__ import annotations

from fastapi import FastAPI

from imgpipe import __version__
from imgpipe.api import (
    auth,
    openapi,
    problems,
    routes_admin,
    routes_docs,
    routes_health,
    routes_images,
    routes_me,
    routes_moderation,
    routes_ops,
    routes_uploads,
    routes_web,
    routes_webhooks,
)
from imgpipe.api.head import HeadAsGet
from imgpipe.api.routes_render import RenderRoute
from imgpipe.api.routes_render import router as render_router
from imgpipe.api.routes_render_url import router as render_url_router
from imgpipe.services.deps import ServiceDeps


def create_app(deps: ServiceDeps) -> FastAPI:
    app = FastAPI(
        title="imgpipe",
        version=__version__,
        summary="Upload, validate, store and turn user images into web variants.",
        # /docs is routes_docs: Swagger UI from this origin, not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.deps = deps
    problems.install(app)
    # Innermost of the middleware: render requests skip FastAPI's routing, nothing else.
    app.add_middleware(RenderRoute, owner=app)
    auth.install(app, deps)
    app.add_middleware(HeadAsGet)  # inside the timing, which so records HEAD as HEAD
    app.add_middleware(routes_ops.RequestTiming)
    app.include_router(routes_health.router)
    app.include_router(routes_docs.router)
    app.include_router(routes_ops.router)
    app.include_router(routes_uploads.router)
    app.include_router(routes_images.router)
    app.include_router(routes_webhooks.router)
    app.include_router(routes_admin.router)
    app.include_router(routes_moderation.router)
    app.include_router(routes_me.router)
    app.include_router(render_router)
    app.include_router(render_url_router)
    app.include_router(routes_web.router)
    openapi.install(app)
    return app
