"""S3 misbehaving: 503 Slow Down, slow answers, reset connections, cut and corrupted bytes.

A fault proxy sits between imgpipe and the S3 API server (moto, on loopback). Two levels:

- the object store alone (``S3Store`` through the proxy): each fault, for a fixed number
  of requests, either is absorbed by botocore's retries or ends in a retryable imgpipe error,
  and a corrupted body is never stored or returned;
- the whole stack (`imgpipe api` + `imgpipe worker` on Redis and PostgreSQL, S3 through the
  proxy) while faults cycle for a window: afterwards every stored original hashes to its
  key, every stored variant decodes, and nothing is partial.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import httpx
import pytest
from botocore.config import Config
from PIL import Image

from faults.proxy import Fault, FaultProxy
from imgpipe.domain.errors import ChecksumMismatch, ImgpipeError, StorageUnavailable
from imgpipe.storage.s3 import S3Store
from integration.conftest import (
    ImgpipeServer,
    assert_done,
    assert_problem,
    upload,
    upload_ok,
    wait_done,
)
from integration.images import noisy
from s3server import AWS_TEST_ENV, running_s3_server, use_aws_test_env


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with running_s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    use_aws_test_env(monkeypatch)


def direct_client(endpoint: str) -> object:
    """A client straight to the S3 server (no proxy), for checking what is stored."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=AWS_TEST_ENV["AWS_DEFAULT_REGION"],
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture
def bucket(s3_endpoint: str, aws_env: None) -> str:
    name = f"imgpipe-faults-{uuid.uuid4().hex[:12]}"
    direct_client(s3_endpoint).create_bucket(Bucket=name)  # type: ignore[attr-defined]
    return name


@pytest.fixture
def s3_proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    target = urlsplit(s3_endpoint)
    assert target.hostname is not None and target.port is not None
    with FaultProxy((target.hostname, target.port), http=True) as proxy:
        yield proxy


def store_through(proxy: FaultProxy, bucket: str, read_timeout_s: float = 30.0) -> S3Store:
    return S3Store(
        bucket, "p", endpoint_url=f"http://{proxy.address}", read_timeout_s=read_timeout_s
    )


def stored_objects(endpoint: str, bucket: str) -> dict[str, bytes]:
    client = direct_client(endpoint)
    listed = client.list_objects_v2(Bucket=bucket)  # type: ignore[attr-defined]
    return {
        item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()  # type: ignore[attr-defined]
        for item in listed.get("Contents", [])
    }


def staged(tmp_path: Path, data: bytes) -> tuple[Path, str]:
    path = tmp_path / f"staged-{uuid.uuid4().hex}"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


# Faults botocore's retries absorb: (mode, how many times, what it looks like).
ABSORBED = [
    pytest.param(Fault.ANSWER_503, 2, id="503-slow-down-twice"),
    pytest.param(Fault.RESET, 2, id="connection-reset-twice"),
    pytest.param(Fault.DELAY, 1, id="answer-slower-than-read-timeout"),
]


@pytest.mark.parametrize(("mode", "count"), ABSORBED)
def test_retries_absorb_transient_s3_faults(
    tmp_path: Path, s3_endpoint: str, bucket: str, s3_proxy: FaultProxy, mode: Fault, count: int
) -> None:
    store = store_through(s3_proxy, bucket, read_timeout_s=1.0)
    data = os.urandom(300_000)
    path, sha = staged(tmp_path, data)

    s3_proxy.set(mode, count=count, delay_s=2.0)
    started = time.monotonic()
    store.put_file(f"originals/{sha}", path, sha)
    put_s = time.monotonic() - started

    s3_proxy.set(mode, count=count, delay_s=2.0)
    assert store.get_bytes(f"originals/{sha}") == data
    assert s3_proxy.mode is Fault.PASS, "the fault was never applied"
    assert stored_objects(s3_endpoint, bucket) == {f"p/originals/{sha}": data}
    print(f"\nFIGURES s3 {mode.value} x{count}: put succeeded after retries in {put_s:.2f}s")


def test_a_body_corrupted_on_the_way_in_is_refused_and_nothing_is_stored(
    tmp_path: Path, s3_endpoint: str, bucket: str, s3_proxy: FaultProxy
) -> None:
    store = store_through(s3_proxy, bucket)
    data = os.urandom(200_000)
    path, sha = staged(tmp_path, data)
    s3_proxy.set(Fault.CORRUPT_UP, count=1)
    with pytest.raises(ChecksumMismatch) as refused:
        store.put_file(f"originals/{sha}", path, sha)
    assert refused.value.retryable
    assert s3_proxy.stats.corrupted == 1
    assert stored_objects(s3_endpoint, bucket) == {}, "a corrupted body was stored"
    assert path.exists(), "the staged file must survive a refused put (the retry needs it)"
    # Once the path is clean, the same put stores the right bytes.
    store.put_file(f"originals/{sha}", path, sha)
    assert stored_objects(s3_endpoint, bucket) == {f"p/originals/{sha}": data}


def test_a_body_corrupted_on_the_way_out_is_never_returned(
    tmp_path: Path, s3_endpoint: str, bucket: str, s3_proxy: FaultProxy
) -> None:
    store = store_through(s3_proxy, bucket)
    data = os.urandom(200_000)
    key = f"originals/{hashlib.sha256(data).hexdigest()}"
    store.put_bytes(key, data)
    for read in (
        store.get_bytes,
        lambda k: b"".join(store.iter_bytes(k)),
        lambda k: _read_local_file(store, k),
    ):
        s3_proxy.set(Fault.CORRUPT_DOWN, count=1)
        with pytest.raises(ChecksumMismatch):
            read(key)
        assert s3_proxy.mode is Fault.PASS
        assert read(key) == data
    assert stored_objects(s3_endpoint, bucket) == {f"p/{key}": data}


def _read_local_file(store: S3Store, key: str) -> bytes:
    with store.local_file(key) as path:
        return path.read_bytes()


def test_a_response_cut_mid_stream_is_an_error_not_short_data(
    s3_endpoint: str, bucket: str, s3_proxy: FaultProxy
) -> None:
    store = store_through(s3_proxy, bucket)
    data = os.urandom(2_000_000)
    key = f"originals/{hashlib.sha256(data).hexdigest()}"
    store.put_bytes(key, data)
    outcomes: list[str] = []
    for _ in range(5):
        s3_proxy.set(Fault.DROP, count=1)
        try:
            got = store.get_bytes(key)
        except ImgpipeError as exc:
            assert isinstance(exc, StorageUnavailable | ChecksumMismatch), exc
            outcomes.append(exc.code)
        else:
            assert got == data, "a cut response was returned as if whole"
            outcomes.append("retried")
    assert s3_proxy.stats.drops == 5
    print(f"\nFIGURES s3 cut mid-stream x5: {outcomes}")


def test_a_long_outage_is_a_retryable_error_and_service_resumes(
    tmp_path: Path, s3_endpoint: str, bucket: str, s3_proxy: FaultProxy
) -> None:
    """Past botocore's retries the error is StorageUnavailable (retryable); the staged
    file is kept, and the same put succeeds once S3 answers again."""
    store = store_through(s3_proxy, bucket)
    data = os.urandom(100_000)
    path, sha = staged(tmp_path, data)
    for mode in (Fault.ANSWER_503, Fault.RESET):
        s3_proxy.set(mode)
        started = time.monotonic()
        with pytest.raises(StorageUnavailable) as failed:
            store.put_file(f"originals/{sha}", path, sha)
        gave_up_s = time.monotonic() - started
        assert failed.value.retryable
        assert path.exists()
        assert stored_objects(s3_endpoint, bucket) == {}
        print(f"\nFIGURES s3 {mode.value} without end: gave up after {gave_up_s:.2f}s")
    s3_proxy.set(Fault.PASS)
    store.put_file(f"originals/{sha}", path, sha)
    assert stored_objects(s3_endpoint, bucket) == {f"p/originals/{sha}": data}


# --- the whole stack ----------------------------------------------------------------------

CYCLE = [
    (Fault.ANSWER_503, {}),
    (Fault.DELAY, {"delay_s": 0.3}),
    (Fault.RESET, {}),
    (Fault.CORRUPT_UP, {}),
    (Fault.CORRUPT_DOWN, {}),
    (Fault.DROP, {}),
]
WINDOW_S = 9.0
RETRYABLE = {"storage_unavailable", "checksum_mismatch"}


def test_stack_through_a_faulty_s3_window_keeps_every_object_whole(
    scaled_stack: Callable[[dict[str, str]], ImgpipeServer],
    s3_endpoint: str,
    bucket: str,
    s3_proxy: FaultProxy,
) -> None:
    server = scaled_stack(
        {
            "IMGPIPE_STORAGE_URL": f"s3://{bucket}/run",
            "IMGPIPE_S3_ENDPOINT_URL": f"http://{s3_proxy.address}",
            # Retries must outlast the fault window: 10 attempts, jittered up to 4 s apart.
            "IMGPIPE_MAX_ATTEMPTS": "10",
            "IMGPIPE_RETRY_BASE_S": "1",
            "IMGPIPE_RETRY_MAX_S": "4",
            **AWS_TEST_ENV,
        }
    )
    accepted: dict[str, bytes] = {}
    answers: Counter[str] = Counter()
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        started = time.monotonic()
        seed = 0
        while time.monotonic() - started < WINDOW_S:
            mode, params = CYCLE[seed % len(CYCLE)]
            s3_proxy.set(mode, **params)  # type: ignore[arg-type]
            seed += 1
            data = noisy(480, 360, seed=seed)
            response = upload(client, data, f"window-{seed}.jpg")
            if response.status_code == 202:
                accepted[response.json()["id"]] = data
                answers["202"] += 1
            else:
                problem = assert_problem(response, 503, response.json().get("code", "?"))
                assert problem["code"] in RETRYABLE, problem
                assert int(response.headers["retry-after"]) > 0
                answers[problem["code"]] += 1
        s3_proxy.set(Fault.PASS)
        window_stats = dataclasses.replace(s3_proxy.stats)

        outcomes: Counter[str] = Counter()
        attempts: Counter[int] = Counter()
        for image_id, data in accepted.items():
            resource = wait_done(client, image_id, timeout=120)
            outcomes[resource["status"]] += 1
            # Transient faults during processing were retried from the database until
            # they succeeded: every accepted image ends done.
            assert_done(resource)
            for variant in resource["variants"].values():
                attempts[variant["attempts"]] += 1
            original = client.get(f"/v1/images/{image_id}/original")
            assert original.status_code == 200 and original.content == data

        # Service resumes: uploads after the window complete in full.
        for n in range(3):
            after = upload_ok(client, noisy(480, 360, seed=10_000 + n), f"after-{n}.jpg")
            assert_done(wait_done(client, after["id"], timeout=120))

    # Nothing partial or corrupt anywhere in the bucket.
    objects = stored_objects(s3_endpoint, bucket)
    originals = variants = 0
    for name, body in objects.items():
        key = name.removeprefix("run/")
        if key.startswith("originals/"):
            assert hashlib.sha256(body).hexdigest() == key.rsplit("/", 1)[1], name
            originals += 1
        elif key.startswith("variants/"):
            assert decodes(body), name
            variants += 1
    assert originals >= len(accepted) > 0
    print(
        f"\nFIGURES s3 fault window {WINDOW_S:.0f}s: uploads {dict(answers)}; accepted images "
        f"{dict(outcomes)}, variants by attempts {dict(sorted(attempts.items()))}; proxy: "
        f"{window_stats.answered_503} answered 503, {window_stats.resets} resets, "
        f"{window_stats.corrupted} bodies corrupted, {window_stats.drops} cut, "
        f"{window_stats.delayed} delayed; bucket: {originals} originals and {variants} "
        f"variants, all whole"
    )


def decodes(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
    return True
