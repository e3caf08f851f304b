"""Every status code each route can answer, written into the OpenAPI document.

FastAPI documents the success code and a 422 for request validation; imgpipe answers
validation errors with 400 and has a dozen other problems. One table here, applied to the
generated schema, keeps the routes' decorators small and the document true: schemathesis
(tests/integration/test_schema_fuzz.py) fails on any status or body the schema does not
describe.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

PROBLEM_MEDIA_TYPE = "application/problem+json"

_PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "Stable, machine-readable (README table)."},
    },
}

# What each status means here, with the problem codes it carries.
_MEANING = {
    302: "A redirect to a short-lived presigned GET of the object (`VARIANT_PRESIGN_S`).",
    304: "Not modified (`If-None-Match` matched the `ETag`).",
    400: "`bad_request`, `bad_option`, `bad_callback_url`: the request is not valid.",
    401: "`unauthorized`: a key is needed, or the one sent is unknown or revoked.",
    403: "`bad_signature`, `expired` (signed URLs); `held_for_review`, `content_rejected` "
    "(keyless delivery of an image moderation holds); `forbidden` (admin routes).",
    404: "`not_found`: no such resource for this caller.",
    409: "`not_ready`, `upload_missing`, `idempotency_conflict`, `idempotency_in_progress`, "
    "`moderation_pending`.",
    413: "`too_large`: over `MAX_UPLOAD_BYTES`.",
    415: "`unsupported_type`: not an image type imgpipe accepts, by its bytes.",
    422: "`corrupt_image`, `too_many_pixels`, `too_many_frames`, `timeout`.",
    429: "`rate_limited`: see `Retry-After` and the `RateLimit-*` headers.",
    503: "`database_unavailable`, `storage_unavailable`, `checksum_mismatch`: retry later.",
    507: "`insufficient_storage`: no space to store the upload; retry later.",
}

# Every /v1 call may be refused for its parameters, its key, its rate or the database.
_V1 = (400, 401, 429, 503)
_UPLOAD = (409, 413, 415, 422, 507)
RESPONSES: dict[tuple[str, str], tuple[int, ...]] = {
    ("get", "/healthz"): (),
    ("get", "/readyz"): (),  # its 503 has the 200's body (which check failed), below
    ("get", "/metrics"): (503,),
    ("post", "/v1/uploads"): (*_V1, 413),
    ("put", "/v1/uploads/{image_id}/content"): (*_V1, 403, 404, 413, 507),
    ("post", "/v1/images/{image_id}/complete"): (*_V1, 404, *_UPLOAD),
    ("post", "/v1/images"): (*_V1, *_UPLOAD),
    ("get", "/v1/images"): _V1,
    ("get", "/v1/me"): _V1,
    ("get", "/v1/images/{image_id}"): (*_V1, 404),
    ("get", "/v1/images/{image_id}/similar"): (*_V1, 404, 409),
    ("delete", "/v1/images/{image_id}"): (*_V1, 404),
    ("get", "/v1/images/{image_id}/variants/{name}"): (*_V1, 302, 304, 403, 404, 409),
    ("post", "/v1/images/{image_id}/render-url"): (*_V1, 404),
    ("post", "/v1/admin/images/{image_id}/restore"): (*_V1, 403, 404, 409),
    ("get", "/v1/admin/moderation"): (*_V1, 403),
    ("post", "/v1/admin/images/{image_id}/moderation"): (*_V1, 403, 404, 409),
    ("get", "/v1/admin/images/{image_id}/moderation"): (*_V1, 403, 404),
    ("get", "/v1/admin/images/{image_id}/variants/{name}"): (*_V1, 304, 403, 404, 409),
    ("get", "/v1/images/{image_id}/original"): (*_V1, 304, 404),
    ("post", "/v1/images/{image_id}/reprocess"): (*_V1, 404),
    ("get", "/v1/images/{image_id}/webhooks"): (*_V1, 404),
    ("get", "/v1/admin/keys"): (*_V1, 403),
    ("get", "/v1/admin/dead-letters"): (*_V1, 403),
    ("post", "/v1/admin/dead-letters/{dead_letter_id}/retry"): (*_V1, 403, 404, 409),
    ("get", "/v1/render/{name}"): (*_V1, 304, 403, 404, 409, 422),
}


def install(app: FastAPI) -> None:
    """Replace ``app.openapi`` with one that adds the table above (built once, cached)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document(generate())
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the problem responses to ``schema`` in place; FastAPI's 422 (a validation
    error body imgpipe never sends) is replaced where 422 means an image problem, and
    dropped elsewhere."""
    schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = _PROBLEM
    problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            codes = RESPONSES.get((method, path))
            if codes is None:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            responses.pop("422", None)
            if path == "/readyz" and "200" in responses:
                responses["503"] = {**responses["200"], "description": "Not ready: see checks."}
            for code in sorted(set(codes)):
                if code in (302, 304):
                    responses[str(code)] = {"description": _MEANING[code]}
                else:
                    responses[str(code)] = {"description": _MEANING[code], "content": problem}
    return schema
