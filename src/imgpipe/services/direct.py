"""Direct uploads: the client sends the bytes to storage, then asks us to take them in.

``announce`` hands out an upload form: an S3 presigned POST whose policy caps the size,
or, on a local store, a signed URL of the API itself. ``complete`` never trusts the client
or the store's policy: it measures, hashes and validates the bytes exactly as a normal
upload, then moves them to their content-addressed key.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from imgpipe.db import repo
from imgpipe.db.schema import utcnow
from imgpipe.domain.errors import (
    BadRequest,
    BadSignature,
    Expired,
    IdempotencyInProgress,
    ImgpipeError,
    NotFound,
    TooLarge,
    UploadMissing,
)
from imgpipe.domain.ids import new_image_id
from imgpipe.domain.signing import sign, verify
from imgpipe.services import ingest
from imgpipe.services.deps import ServiceDeps
from imgpipe.services.queries import get_image
from imgpipe.services.views import ImageView
from imgpipe.storage import keys

UPLOAD_TTL = timedelta(minutes=15)
# A concurrent `complete` waits this long for the one that claimed the upload.
COMPLETE_WAIT_S = 30.0
# A claim this old belongs to a caller that died mid-way: another may take it over.
COMPLETE_LEASE = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class UploadTicket:
    image_id: str
    method: str
    url: str
    expires_at: datetime
    fields: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def announce(
    deps: ServiceDeps,
    owner: str,
    filename: str,
    content_type: str | None,
    declared_bytes: int,
    api_base_url: str,
) -> UploadTicket:
    limit = deps.limits.max_upload_bytes
    if declared_bytes > limit:
        raise TooLarge(f"{declared_bytes} bytes is over the limit of {limit} bytes.")
    if declared_bytes < 1:
        raise BadRequest("bytes must be at least 1.")
    image_id = new_image_id()
    key = keys.direct_upload(image_id)
    expires_at = utcnow() + UPLOAD_TTL
    form = deps.store.direct_upload_form(key, limit, int(UPLOAD_TTL.total_seconds()))
    if form is not None:
        ticket = UploadTicket(
            image_id, form.method, form.url, form.expires_at, form.fields, form.headers
        )
    else:
        expires = int(expires_at.timestamp())
        path = upload_content_path(image_id)
        signature = sign(deps.signing_key, _canonical(path, expires))
        ticket = UploadTicket(
            image_id,
            "PUT",
            f"{api_base_url.rstrip('/')}{path}?exp={expires}&sig={signature}",
            expires_at,
            headers={"Content-Type": "application/octet-stream"},
        )
    with deps.sessions.begin() as session:
        repo.add_upload(
            session,
            image_id,
            owner=owner,
            filename=filename[:500],
            content_type=content_type,
            declared_bytes=declared_bytes,
            storage_key=key,
            expires_at=ticket.expires_at,
        )
    return ticket


def upload_content_path(image_id: str) -> str:
    return f"/v1/uploads/{image_id}/content"


def _canonical(path: str, expires: int) -> str:
    return f"PUT\n{path}\n{expires}"


def check_upload_signature(deps: ServiceDeps, image_id: str, expires: int, signature: str) -> None:
    """For the API's own upload URL (local storage): 403 unless signed by us and fresh."""
    if not verify(deps.signing_key, _canonical(upload_content_path(image_id), expires), signature):
        raise BadSignature("The upload URL's signature does not match.")
    if expires < utcnow().timestamp():
        raise Expired("The upload URL has expired; ask POST /v1/uploads for a new one.")


def receive(deps: ServiceDeps, image_id: str, staged: ingest.StagedUpload) -> None:
    """Keep the bytes the API received for a signed upload URL (local storage)."""
    with deps.sessions() as session:
        row = repo.get_upload(session, image_id)
        if row is None or row.completed_at is not None:
            raise NotFound(f"No open upload {image_id}.")
        key = row.storage_key
    deps.store.put_file(key, staged.path, staged.sha256)


def complete(
    deps: ServiceDeps, image_id: str, owner: str, callback_url: str | None = None
) -> ImageView:
    """Validate what arrived and accept it as the image; repeating it is harmless, also
    at the same time: one caller claims the upload, the others wait for its image."""
    waited_until = time.monotonic() + COMPLETE_WAIT_S
    while True:
        with deps.sessions.begin() as session:
            row = repo.get_upload(session, image_id)
            if row is None or row.owner != owner:
                raise NotFound(f"No upload {image_id}.")
            key, filename = row.storage_key, row.filename
            if repo.get_image(session, image_id, owner) is not None:
                done = True
            else:
                now = utcnow()
                done = False
                claimed = repo.claim_upload(session, image_id, now, now - COMPLETE_LEASE)
        if done:
            return get_image(deps, image_id, owner)
        if claimed:
            break
        if time.monotonic() > waited_until:
            raise IdempotencyInProgress(
                f"Another request is completing {image_id}; retry in a few seconds."
            )
        time.sleep(0.05)
    try:
        return _complete_claimed(deps, image_id, key, filename, owner, callback_url)
    except BaseException:
        # Give the claim back so a retry may complete it at once; if even that fails (the
        # database went away), the claim goes stale after COMPLETE_LEASE instead.
        with contextlib.suppress(Exception), deps.sessions.begin() as session:
            repo.release_upload(session, image_id)
        raise


def _complete_claimed(
    deps: ServiceDeps,
    image_id: str,
    key: str,
    filename: str | None,
    owner: str,
    callback_url: str | None,
) -> ImageView:
    if not deps.store.exists(key):
        raise UploadMissing(f"Upload the file for {image_id} first, then complete it.")
    limit = deps.limits.max_upload_bytes
    if deps.store.size(key) > limit:
        deps.store.delete(key)
        raise TooLarge(f"The uploaded file is over the limit of {limit} bytes.")
    staged = _stage_copy(deps, key, filename)
    try:
        view = ingest.ingest(deps, staged, owner, callback_url=callback_url, image_id=image_id)
    except ImgpipeError as exc:
        staged.path.unlink(missing_ok=True)
        if not exc.retryable:  # refused for its content: nothing there is worth keeping
            deps.store.delete(key)
        raise
    except BaseException:
        staged.path.unlink(missing_ok=True)
        raise
    deps.store.delete(key)
    return view


def _stage_copy(deps: ServiceDeps, key: str, filename: str | None) -> ingest.StagedUpload:
    """Copy the object to the staging area, measuring and hashing it on the way."""
    deps.staging_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="upload-", dir=deps.staging_dir)
    digest = hashlib.sha256()
    size = 0
    with os.fdopen(fd, "wb") as out:
        for chunk in deps.store.iter_bytes(key):
            size += len(chunk)
            digest.update(chunk)
            out.write(chunk)
    return ingest.StagedUpload(Path(name), size, digest.hexdigest(), filename)
