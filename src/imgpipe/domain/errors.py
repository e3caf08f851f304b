"""One error tree for the whole service.

Each error knows its stable machine-readable ``code``, the HTTP status it maps to, a
sentence a person can act on, and whether retrying the same work could succeed. The API
turns any of them into RFC 9457 problem+json in one handler; workers use ``retryable`` to
decide between a retry and a permanent failure.
"""

from __future__ import annotations

from typing import ClassVar


class ImgpipeError(Exception):
    """Base of every error imgpipe reports to a user."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    retryable: ClassVar[bool] = False

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.title
        super().__init__(self.detail)


# --- input problems: permanent, the client must send something else -----------------


class BadRequest(ImgpipeError):
    code = "bad_request"
    status = 400
    title = "The request is not valid"


class TooLarge(ImgpipeError):
    code = "too_large"
    status = 413
    title = "The upload is larger than allowed"


class UnsupportedType(ImgpipeError):
    code = "unsupported_type"
    status = 415
    title = "This file type is not supported"


class TooManyPixels(ImgpipeError):
    code = "too_many_pixels"
    status = 422
    title = "The image has more pixels than allowed"


class TooManyFrames(ImgpipeError):
    code = "too_many_frames"
    status = 422
    title = "The animation has more frames than allowed"


class CorruptImage(ImgpipeError):
    code = "corrupt_image"
    status = 422
    title = "The image data is corrupt or truncated"


class ProcessTimeout(ImgpipeError):
    """A deterministic decode or encode ran past PROCESS_TIMEOUT_S: retrying gives the same."""

    code = "timeout"
    status = 422
    title = "Processing took longer than allowed"


# --- lookups ----------------------------------------------------------------------------


class NotFound(ImgpipeError):
    code = "not_found"
    status = 404
    title = "Not found"


class NotReady(ImgpipeError):
    code = "not_ready"
    status = 409
    title = "The variant is not ready yet"


class BadSignature(ImgpipeError):
    code = "bad_signature"
    status = 403
    title = "The signature is missing or does not match"


class Expired(ImgpipeError):
    code = "expired"
    status = 403
    title = "The signed URL has expired"


class UploadMissing(ImgpipeError):
    code = "upload_missing"
    status = 409
    title = "Nothing has been uploaded for this image yet"


# --- access control ---------------------------------------------------------------


class Unauthorized(ImgpipeError):
    code = "unauthorized"
    status = 401
    title = "A valid API key is required"


class AdminRequired(ImgpipeError):
    code = "forbidden"
    status = 403
    title = "This endpoint needs an admin key"


class BadIdempotencyKey(ImgpipeError):
    code = "bad_request"
    status = 400
    title = "The Idempotency-Key header is not valid"


class IdempotencyConflict(ImgpipeError):
    code = "idempotency_conflict"
    status = 409
    title = "This Idempotency-Key was used with a different request"


class IdempotencyInProgress(ImgpipeError):
    code = "idempotency_in_progress"
    status = 409
    title = "A request with this Idempotency-Key is still in progress"
    retryable = True


class RateLimited(ImgpipeError):
    code = "rate_limited"
    status = 429
    title = "Too many requests"
    retryable = True

    def __init__(self, detail: str, headers: dict[str, str]) -> None:
        super().__init__(detail)
        self.response_headers = headers


# --- infrastructure: transient, the same work may succeed later ------------------------


class StorageUnavailable(ImgpipeError):
    code = "storage_unavailable"
    status = 503
    title = "Storage is unavailable"
    retryable = True


class InsufficientStorage(ImgpipeError):
    code = "insufficient_storage"
    status = 507
    title = "There is no space left to store the upload"
    retryable = True


class ChecksumMismatch(ImgpipeError):
    code = "checksum_mismatch"
    status = 503
    title = "Stored bytes did not match their checksum"
    retryable = True


class DatabaseUnavailable(ImgpipeError):
    """The database cannot be reached (refused, reset, timed out): nothing was recorded."""

    code = "database_unavailable"
    status = 503
    title = "The database is unavailable"
    retryable = True


class EngineFailure(ImgpipeError):
    """libvips failed for a reason we could not attribute to the input."""

    code = "engine_error"
    status = 500
    title = "The image engine failed"


# --- jobs ---------------------------------------------------------------------------------


class WorkerLost(ImgpipeError):
    """The worker stopped (killed, crashed, out of memory) before recording an outcome.

    Retried like any transient failure; a job that loses its worker on every attempt
    (a "poison" image) fails with this code once its attempts are used up.
    """

    code = "worker_lost"
    status = 500
    title = "The worker processing this image stopped before it finished"
    retryable = True


class UnexpectedFailure(ImgpipeError):
    """An exception imgpipe has no name for: retried, since it may have been transient."""

    code = "internal_error"
    status = 500
    title = "Processing failed unexpectedly"
    retryable = True
