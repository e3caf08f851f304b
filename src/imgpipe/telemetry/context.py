"""The image a piece of work is about, carried into every log line it writes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

current_image_id: ContextVar[str | None] = ContextVar("imgpipe_image_id", default=None)


@contextlib.contextmanager
def image_context(image_id: str) -> Iterator[None]:
    token = current_image_id.set(image_id)
    try:
        yield
    finally:
        current_image_id.reset(token)
