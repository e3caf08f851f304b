"""Structured logs: one JSON object per line, with the image id wherever there is one."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from imgpipe.telemetry.context import current_image_id

# Attributes every LogRecord has; anything else was passed in `extra=` and is kept.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of a record: its image id (passed in or from the context of
    the work) and whatever else was passed in ``extra=``."""
    fields: dict[str, Any] = {}
    image_id = getattr(record, "image_id", None) or current_image_id.get()
    if image_id:
        fields["image_id"] = image_id
    for key, value in vars(record).items():
        if key not in _STANDARD and key not in fields:
            fields[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """One line for a person, with the same fields as the JSON lines as ``key=value``
    after the message (quoted where a value has spaces), so ``grep image_id=img_...``
    follows an image through the text log too."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        pairs = [f"{key}={_text_value(value)}" for key, value in _fields(record).items()]
        return " ".join([line, *pairs])


def _text_value(value: Any) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # libvips reports every operation it plans at INFO: noise, not news.
    logging.getLogger("pyvips").setLevel(logging.WARNING)
