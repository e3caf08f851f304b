"""NudeNet: a local ONNX detector (YOLOv8n at 320x320) on onnxruntime's CPU build.

The ``moderation`` extra installs it. NudeNet is AGPL-3.0 (its package metadata says MIT,
its LICENSE file AGPL: imgpipe treats it as AGPL), so it is never a default dependency.
Its model (``320n.onnx``) ships inside the wheel; nothing is downloaded, ever. A missing
package or model file stops the process at start with the setting to change.

NudeNet finds body parts, exposed or covered, with a score each. Exposed genitals,
breasts, buttocks and anus count as ``nudity``; the covered ones as ``suggestive``;
faces, feet, armpits, bellies and bare male chests are reported to nobody.
"""

from __future__ import annotations

import importlib.util
import threading
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any

from imgpipe.domain.moderation import Label, ModerationImage, ModerationUnavailable

CATEGORY = {
    "FEMALE_GENITALIA_EXPOSED": "nudity",
    "MALE_GENITALIA_EXPOSED": "nudity",
    "FEMALE_BREAST_EXPOSED": "nudity",
    "BUTTOCKS_EXPOSED": "nudity",
    "ANUS_EXPOSED": "nudity",
    "FEMALE_GENITALIA_COVERED": "suggestive",
    "FEMALE_BREAST_COVERED": "suggestive",
    "BUTTOCKS_COVERED": "suggestive",
    "ANUS_COVERED": "suggestive",
}


class NudeNetModerator:
    # The detector pads to a square and looks at it at 320x320: a larger copy only costs
    # decode and resize time for the same input.
    max_side = 320

    def __init__(self, model_path: Path | None = None, threads: int = 1) -> None:
        self._model_path = model_path
        self._threads = threads
        self._detector: Any = None
        self._lock = threading.Lock()
        self.model = "nudenet-320n" if model_path is None else f"nudenet-{model_path.stem}"

    def _resolved_model(self) -> Path:
        if self._model_path is not None:
            return self._model_path
        # Found, not imported: nudenet imports OpenCV and onnxruntime, which an API
        # process that never moderates should not carry.
        spec = _find("nudenet")
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(
                "setting IMGPIPE_MODERATION=nudenet needs the moderation extra: "
                "pip install 'imgpipe[moderation]'"
            )
        return Path(next(iter(spec.submodule_search_locations))) / "320n.onnx"

    def check(self) -> None:
        if _find("onnxruntime") is None:
            raise ValueError(
                "setting IMGPIPE_MODERATION=nudenet needs onnxruntime: "
                "pip install 'imgpipe[moderation]'"
            )
        path = self._resolved_model()
        if not path.is_file():
            raise ValueError(
                f"setting IMGPIPE_NUDENET_MODEL: no model file at {path}; nothing is "
                "downloaded at run time, so the file must be installed with the package"
            )

    def _load(self) -> Any:
        """The detector, made once per process on first use (the API never needs it)."""
        with self._lock:
            if self._detector is None:
                import onnxruntime
                from nudenet import NudeDetector

                detector = NudeDetector(model_path=str(self._resolved_model()))
                # One intra-op thread: moderation must not take the cores variants use;
                # concurrency comes from the worker's slots instead.
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = self._threads
                options.inter_op_num_threads = 1
                detector.onnx_session = onnxruntime.InferenceSession(
                    str(self._resolved_model()), options, providers=["CPUExecutionProvider"]
                )
                self._detector = detector
            return self._detector

    def classify(self, image: ModerationImage) -> list[Label]:
        import numpy as np

        detector = self._load()
        rgb = np.frombuffer(image.rgb, np.uint8).reshape(image.height, image.width, 3)
        # NudeDetector converts its input from RGBA to BGR and then swaps to RGB for the
        # network: hand it RGBA.
        rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
        try:
            detections = detector.detect(rgba)
        except Exception as exc:  # onnxruntime's own errors: not ours to name
            raise ModerationUnavailable(f"NudeNet failed: {type(exc).__name__}: {exc}") from exc
        best: dict[str, float] = {}
        for detection in detections:
            name = str(detection["class"])
            best[name] = max(best.get(name, 0.0), float(detection["score"]))
        return [
            Label(name, round(min(1.0, max(0.0, score)), 4), CATEGORY.get(name))
            for name, score in sorted(best.items())
        ]


def _find(name: str) -> ModuleSpec | None:
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):  # a module set to None in sys.modules, a broken one
        return None
