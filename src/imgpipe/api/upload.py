"""Stream a multipart upload to a staging file, counting and hashing as it arrives.

Starlette's own form parsing spools the whole body before a handler runs, so the size
limit could only be checked after a 1 GB body had been written. Here the body is parsed
chunk by chunk: the ``file`` part goes straight to disk, and the moment it passes
MAX_UPLOAD_BYTES the request is refused with 413 and the partial file is removed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from imgpipe.domain.errors import BadRequest, InsufficientStorage, TooLarge
from imgpipe.services.ingest import StagedUpload

# Small text fields (profiles, callback_url) are kept in memory up to this size each.
MAX_FIELD_BYTES = 8192
# Multipart framing (boundaries, part headers) allowed on top of the file itself.
FRAMING_ALLOWANCE = 64 * 1024


@dataclass
class UploadForm:
    staged: StagedUpload
    fields: dict[str, str] = field(default_factory=dict)


class _PartCollector:
    def __init__(self, staging_dir: Path, max_bytes: int) -> None:
        self.staging_dir = staging_dir
        self.max_bytes = max_bytes
        self.fields: dict[str, str] = {}
        self.file_path: Path | None = None
        self.filename: str | None = None
        self.file_size = 0
        self._hash = hashlib.sha256()
        self._fh: IO[bytes] | None = None
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._is_file = False
        self._field_value = bytearray()

    # python-multipart callbacks ---------------------------------------------------

    def on_part_begin(self) -> None:
        self._headers = {}
        self._name = None
        self._is_file = False
        self._field_value = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = self._header_value = b""

    def on_headers_finished(self) -> None:
        disposition = self._headers.get(b"content-disposition", b"")
        _, params = parse_options_header(disposition)
        name = params.get(b"name", b"").decode("utf-8", "replace")
        self._name = name
        self._is_file = name == "file"
        if self._is_file:
            if self.file_path is not None:
                raise BadRequest("Send exactly one part named 'file'.")
            # Browsers send the name as UTF-8 inside the quotes; ingest sanitises it.
            raw_name = params.get(b"filename")
            self.filename = raw_name.decode("utf-8", "replace") if raw_name else None
            fd, tmp = tempfile.mkstemp(prefix="upload-", dir=self.staging_dir)
            self._fh = os.fdopen(fd, "wb")
            self.file_path = Path(tmp)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._is_file and self._fh is not None:
            self.file_size += len(chunk)
            if self.file_size > self.max_bytes:
                raise TooLarge(f"The upload is larger than the limit of {self.max_bytes} bytes.")
            self._hash.update(chunk)
            self._fh.write(chunk)
        else:
            self._field_value += chunk
            if len(self._field_value) > MAX_FIELD_BYTES:
                raise BadRequest(f"Form field {self._name!r} is too long.")

    def on_part_end(self) -> None:
        if self._is_file and self._fh is not None:
            self._fh.close()
            self._fh = None
        elif self._name:
            self.fields[self._name] = self._field_value.decode("utf-8", "replace")

    # ------------------------------------------------------------------------------

    def discard(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):  # flushing may fail again on a full disk
                self._fh.close()
            self._fh = None
        if self.file_path is not None:
            self.file_path.unlink(missing_ok=True)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


async def receive_upload(
    content_type: str | None,
    content_length: str | None,
    body: AsyncIterator[bytes],
    staging_dir: Path,
    max_bytes: int,
) -> UploadForm:
    """Parse a multipart/form-data body with a ``file`` part into a staged upload."""
    mime, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if mime != b"multipart/form-data" or not boundary:
        raise BadRequest("Send the image as multipart/form-data with a part named 'file'.")
    declared = int(content_length) if content_length and content_length.isdigit() else 0
    if declared > max_bytes + FRAMING_ALLOWANCE:
        raise TooLarge(f"The upload is larger than the limit of {max_bytes} bytes.")

    staging_dir.mkdir(parents=True, exist_ok=True)
    collector = _PartCollector(staging_dir, max_bytes)
    callbacks = {
        name: getattr(collector, name)
        for name in (
            "on_part_begin",
            "on_part_data",
            "on_part_end",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
        )
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        async for chunk in body:
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        collector.discard()
        raise BadRequest(f"The multipart body is malformed: {exc}.") from exc
    except OSError as exc:
        collector.discard()
        if _disk_full(exc):
            raise _no_space() from exc
        raise
    except BaseException:
        collector.discard()
        raise
    if collector.file_path is None:
        raise BadRequest("The form has no part named 'file'.")
    staged = StagedUpload(
        collector.file_path, collector.file_size, collector.sha256, collector.filename
    )
    return UploadForm(staged, collector.fields)


async def receive_body(
    content_length: str | None,
    body: AsyncIterator[bytes],
    staging_dir: Path,
    max_bytes: int,
) -> StagedUpload:
    """Stream a raw request body (a signed direct upload) to a staging file, capped."""
    declared = int(content_length) if content_length and content_length.isdigit() else 0
    if declared > max_bytes:
        raise TooLarge(f"The upload is larger than the limit of {max_bytes} bytes.")
    staging_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="upload-", dir=staging_dir)
    path = Path(name)
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in body:
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(f"The upload is larger than the limit of {max_bytes} bytes.")
                digest.update(chunk)
                out.write(chunk)
    except OSError as exc:
        path.unlink(missing_ok=True)
        if _disk_full(exc):
            raise _no_space() from exc
        raise
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return StagedUpload(path, size, digest.hexdigest())


def _disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _no_space() -> InsufficientStorage:
    """A full staging volume is 507 ``insufficient_storage``, like a full store."""
    return InsufficientStorage("No space left to receive the upload; try again later.")
