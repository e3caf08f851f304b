"""AWS Rekognition ``DetectModerationLabels`` through boto3.

It covers what a local nudity model cannot: violence, visually disturbing content, hate
symbols, drugs, alcohol, gambling, rude gestures. The image goes as bytes (a JPEG of at
most ``max_side`` pixels, far under the API's 5 MB), so the bucket needs no policy for
Rekognition. Credentials and region come from the usual ``AWS_*`` variables;
``REKOGNITION_ENDPOINT_URL`` points it elsewhere (a VPC endpoint, a test stand-in).

Labels come in a two- or three-level taxonomy (``Explicit Nudity`` > ``Nudity`` >
...); each counts toward the category of its top-level ancestor, under both the v6 and
the v7 names. Confidence 0-100 becomes a score 0-1.
"""

from __future__ import annotations

from typing import Any

from imgpipe.domain.moderation import (
    Label,
    ModerationImage,
    ModerationRefused,
    ModerationUnavailable,
)

TOP_LEVEL_CATEGORY = {
    "explicit nudity": "nudity",  # taxonomy v6
    "explicit": "nudity",  # v7
    "suggestive": "suggestive",
    "non-explicit nudity of intimate parts and kissing": "suggestive",
    "swimwear or underwear": "suggestive",
    "violence": "violence",
    "visually disturbing": "disturbing",
    "hate symbols": "hate",
    "drugs": "drugs",
    "tobacco": "drugs",
    "drugs & tobacco": "drugs",
    "drugs & tobacco paraphernalia & use": "drugs",
    "alcohol": "alcohol",
    "gambling": "gambling",
    "rude gestures": "gestures",
}
# The image itself is the problem: retrying sends the same bytes and gets the same answer.
_PERMANENT = {
    "InvalidImageFormatException",
    "ImageTooLargeException",
    "InvalidParameterException",
}
MIN_CONFIDENCE = 20.0  # the lowest thresholds people set are well above this


class RekognitionModerator:
    max_side = 1280

    def __init__(
        self, endpoint_url: str | None = None, region: str | None = None, timeout_s: float = 10
    ) -> None:
        self._endpoint_url = endpoint_url
        self._region = region
        self._timeout_s = timeout_s
        self._client: Any = None
        self.model = "rekognition"

    def check(self) -> None:
        try:
            import boto3  # noqa: F401
        except ImportError:
            raise ValueError(
                "setting IMGPIPE_MODERATION=rekognition needs boto3: "
                "pip install 'imgpipe[rekognition]'"
            ) from None
        self._make_client()

    def _make_client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                connect_timeout=self._timeout_s,
                read_timeout=self._timeout_s,
                # One attempt: a failure goes back to the job, whose retries are
                # scheduled in the database (with backoff) instead of sleeping here.
                retries={"total_max_attempts": 1, "mode": "standard"},
            )
            self._client = boto3.session.Session().client(
                "rekognition",
                endpoint_url=self._endpoint_url or None,
                region_name=self._region or None,
                config=config,
            )
        return self._client

    def classify(self, image: ModerationImage) -> list[Label]:
        from botocore.exceptions import BotoCoreError, ClientError

        client = self._make_client()
        try:
            answer = client.detect_moderation_labels(
                Image={"Bytes": image.jpeg}, MinConfidence=MIN_CONFIDENCE
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "unknown"))
            if code in _PERMANENT:
                raise ModerationRefused(f"Rekognition refused the image: {code}.") from exc
            raise ModerationUnavailable(f"Rekognition failed: {code}.") from exc
        except BotoCoreError as exc:  # connection refused, timeouts, bad endpoint
            raise ModerationUnavailable(f"Rekognition unreachable: {exc}") from exc
        version = answer.get("ModerationModelVersion")
        if version:
            self.model = f"rekognition-{version}"
        return labels_of(answer.get("ModerationLabels", []))


def labels_of(raw: list[dict[str, Any]]) -> list[Label]:
    """Each label with the category of its top-level ancestor, best score per name."""
    parents = {str(item.get("Name", "")): str(item.get("ParentName", "")) for item in raw}
    best: dict[str, Label] = {}
    for item in raw:
        name = str(item.get("Name", ""))
        if not name:
            continue
        top, seen = name, {name}
        while parents.get(top):
            top = parents[top]
            if top in seen:
                break
            seen.add(top)
        category = TOP_LEVEL_CATEGORY.get(top.lower())
        score = round(min(1.0, max(0.0, float(item.get("Confidence", 0.0)) / 100.0)), 4)
        if name not in best or best[name].score < score:
            best[name] = Label(name, score, category)
    return list(best.values())
