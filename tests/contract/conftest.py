"""Backends for the contract suites: an S3 API server on loopback, a fresh bucket per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config

from s3server import running_s3_server, use_aws_test_env


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """One server for the whole run (started only if a test asks for S3)."""
    with running_s3_server() as endpoint_url:
        yield endpoint_url


@pytest.fixture
def aws_test_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials for boto3's default chain, for this test only."""
    use_aws_test_env(monkeypatch)


@pytest.fixture
def s3_bucket(s3_endpoint: str, aws_test_env: None) -> str:
    """A bucket of this test's own, so tests (and runs) never see each other's objects."""
    name = f"imgpipe-test-{uuid.uuid4().hex[:12]}"
    client = boto3.session.Session().client(
        "s3", endpoint_url=s3_endpoint, config=Config(s3={"addressing_style": "path"})
    )
    client.create_bucket(Bucket=name)
    client.close()
    return name
