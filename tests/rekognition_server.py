"""A stand-in for AWS Rekognition's ``DetectModerationLabels`` on loopback, for tests.

moto (5.x) implements Rekognition's face, text and label calls but not
DetectModerationLabels, so this small server speaks that one call's wire protocol
(JSON 1.1: ``POST /`` with ``X-Amz-Target: RekognitionService.DetectModerationLabels``,
the image as base64 bytes, errors as ``{"__type": ..., "message": ...}``). boto3 talks to
it through a socket exactly as to AWS, so ``imgpipe serve`` in a subprocess can use it.

What it "sees" is decided by the image's mean colour, so a test chooses the verdict by
the image it generates, and the answer proves the bytes arrived as a JPEG:

- mostly red: ``Violence`` > ``Graphic Violence``, 97.5 (taxonomy v7, three levels)
- mostly blue: ``Explicit Nudity`` > ``Nudity``, 72.0 (v6 names)
- mostly green: ``Hate Symbols`` > ``Nazi Party``, 91.0
- anything else: no label
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from PIL import Image

TARGET = "RekognitionService.DetectModerationLabels"


def _label(name: str, parent: str, confidence: float, level: int) -> dict[str, Any]:
    return {"Name": name, "ParentName": parent, "Confidence": confidence, "TaxonomyLevel": level}


def labels_for(jpeg: bytes) -> list[dict[str, Any]]:
    with Image.open(io.BytesIO(jpeg)) as image:
        if image.format != "JPEG":
            raise ValueError("not a JPEG")
        pixels = np.asarray(image.convert("RGB").resize((16, 16))).reshape(-1, 3).tolist()
    red = sum(p[0] for p in pixels) / len(pixels)
    green = sum(p[1] for p in pixels) / len(pixels)
    blue = sum(p[2] for p in pixels) / len(pixels)
    if red > 150 and green < 100 and blue < 100:
        return [
            _label("Violence", "", 97.5, 1),
            _label("Graphic Violence", "Violence", 97.5, 2),
            _label("Blood & Gore", "Graphic Violence", 96.0, 3),
        ]
    if blue > 150 and red < 100 and green < 100:
        return [
            _label("Explicit Nudity", "", 72.0, 1),
            _label("Nudity", "Explicit Nudity", 72.0, 2),
        ]
    if green > 150 and red < 100 and blue < 100:
        return [_label("Hate Symbols", "", 91.0, 1), _label("Nazi Party", "Hate Symbols", 91.0, 2)]
    return []


@dataclass
class StandIn:
    endpoint_url: str = ""
    calls: int = 0
    # Error codes to answer with, one per call, before answering normally again.
    fail_next: list[str] = field(default_factory=list)
    # An error code to answer every call with while set.
    fail_always: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(state: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", "standin")
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.headers.get("X-Amz-Target") != TARGET:
                self._answer(400, {"__type": "UnknownOperationException", "message": "no"})
                return
            if "authorization" not in {k.lower() for k in self.headers}:
                self._answer(400, {"__type": "MissingAuthenticationTokenException"})
                return
            with state.lock:
                state.calls += 1
                failure = state.fail_next.pop(0) if state.fail_next else state.fail_always
            if failure is not None:
                status = 500 if failure == "InternalServerError" else 400
                self._answer(status, {"__type": failure, "message": f"stand-in: {failure}"})
                return
            try:
                labels = labels_for(base64.b64decode(body["Image"]["Bytes"]))
            except (KeyError, ValueError, OSError):
                self._answer(400, {"__type": "InvalidImageFormatException", "message": "bad"})
                return
            minimum = float(body.get("MinConfidence", 50))
            labels = [x for x in labels if x["Confidence"] >= minimum]
            self._answer(200, {"ModerationLabels": labels, "ModerationModelVersion": "7.0"})

    return Handler


@contextlib.contextmanager
def running_rekognition() -> Iterator[StandIn]:
    state = StandIn()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.endpoint_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="rekognition", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
