"""Originals beyond one copy (issue 14): soft delete, restore and purge; the replica store,
written before the 202, refused while down (through the fault proxy), healed and verified;
the sweeps for orphan originals and killed workers' temporary files; bucket protection.

Against a real `imgpipe serve` (or `api` + `worker` on PostgreSQL and Redis) whose stores are
buckets on the moto S3 server.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from backends import REDIS_PG_S3
from faults.proxy import Fault, FaultProxy

from . import images
from .conftest import (
    ImgpipeServer,
    _s3_settings,
    assert_done,
    assert_problem,
    backend_settings,
    upload,
    upload_and_wait,
    upload_ok,
)
from .test_delivery import bucket_of, s3_client


@pytest.fixture
def s3_serve(tmp_path: Path, s3_endpoint: str) -> Iterator[Callable[..., ImgpipeServer]]:
    """`imgpipe serve` on a fresh bucket of the moto server, with extra settings."""
    started: list[ImgpipeServer] = []

    def start(extra: dict[str, str] | None = None, name: str = "data") -> ImgpipeServer:
        settings, lister = _s3_settings(s3_endpoint)
        settings.update(extra or {})
        server = ImgpipeServer(tmp_path / name, settings=settings, list_objects=lister)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _versions(endpoint: str, bucket: str, prefix: str) -> list[tuple[str, str]]:
    answer = s3_client(endpoint).list_object_versions(Bucket=bucket, Prefix=prefix)
    return [
        (v["Key"], v["VersionId"])
        for kind in ("Versions", "DeleteMarkers")
        for v in answer.get(kind, [])
    ]


def _metric(base_url: str, name: str, labels: str = "") -> float:
    text = httpx.get(f"{base_url}/metrics").text
    pattern = rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+]+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_delete_hides_at_once_restore_brings_back_and_the_purge_removes_every_version(
    s3_serve: Callable[..., ImgpipeServer], s3_endpoint: str
) -> None:
    probe, _ = _s3_settings(s3_endpoint)
    bucket, prefix = bucket_of(probe)
    s3_client(s3_endpoint).put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    server = s3_serve({**probe, "IMGPIPE_DELETE_RETENTION_S": "3600"})
    ready = httpx.get(f"{server.base_url}/readyz").json()
    assert ready["details"]["primary_protection"] == "versioning enabled", ready
    assert _metric(server.base_url, "imgpipe_storage_versioning", '{store="primary"}') == 1.0

    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        data = images.unique_png(seed=1410, size=(640, 480))
        resource = upload_and_wait(client, data, "keep-me.png")
        image_id, sha = resource["id"], resource["original"]["sha256"]
        # A second upload of other bytes under the same key prefix would be a new version;
        # here the variants are written again, so the bucket holds two versions of each.
        again = client.post(f"/v1/images/{image_id}/reprocess")
        assert again.status_code == 202
        before = server.stored_keys()

        assert client.delete(f"/v1/images/{image_id}").status_code == 204
        assert_problem(client.get(f"/v1/images/{image_id}"), 404, "not_found")
        assert_problem(client.get(f"/v1/images/{image_id}/original"), 404, "not_found")
        assert image_id not in [i["id"] for i in client.get("/v1/images").json()["items"]]
        assert server.stored_keys() == before  # hidden, not gone: within the retention

        restored = client.post(f"/v1/admin/images/{image_id}/restore")
        assert restored.status_code == 200, restored.text
        assert client.get(f"/v1/images/{image_id}/original").content == data

        assert client.delete(f"/v1/images/{image_id}").status_code == 204
        kept = server.cli("storage", "sweep")  # retention 3600 s: nothing is due yet
        assert json.loads(kept.stdout)["purged"] == 0, kept.stdout + kept.stderr
        assert _versions(s3_endpoint, bucket, f"{prefix}/originals/{sha[:2]}/{sha}")

    server.stop()
    server.settings["IMGPIPE_DELETE_RETENTION_S"] = "0"
    server.start()  # serve sweeps at start too; the command makes sure it has run
    swept = server.cli("storage", "sweep")
    assert swept.returncode == 0, swept.stderr
    for part in ("originals", "variants", "renders"):
        assert _versions(s3_endpoint, bucket, f"{prefix}/{part}/{sha[:2]}/{sha}") == []
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        assert_problem(client.post(f"/v1/admin/images/{image_id}/restore"), 404, "not_found")


def test_object_lock_keeps_versions_and_the_purge_says_so(
    s3_serve: Callable[..., ImgpipeServer], s3_endpoint: str
) -> None:
    probe, _ = _s3_settings(s3_endpoint)
    locked_bucket = f"{bucket_of(probe)[0]}-locked"
    s3 = s3_client(s3_endpoint)
    s3.create_bucket(Bucket=locked_bucket, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(
        Bucket=locked_bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}},
        },
    )
    server = s3_serve({**probe, "IMGPIPE_STORAGE_URL": f"s3://{locked_bucket}/run"})
    ready = httpx.get(f"{server.base_url}/readyz").json()
    assert "object lock COMPLIANCE 1d" in ready["details"]["primary_protection"], ready
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        resource = upload_ok(client, images.unique_png(seed=1411, size=(320, 240)), "l.png")
        assert client.delete(f"/v1/images/{resource['id']}").status_code == 204
    swept = server.cli("storage", "sweep")
    assert swept.returncode == 0, swept.stderr
    report = json.loads(swept.stdout)
    assert report["purged"] == 1 and report["locked"], report
    assert "object lock" in report["locked"][0] or "AccessDenied" in report["locked"][0]
    assert "kept by object lock" in swept.stderr


@pytest.fixture
def replica_proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    host, port = s3_endpoint.removeprefix("http://").split(":")
    with FaultProxy((host, int(port)), http=True) as proxy:
        yield proxy


def _replica_settings(s3_endpoint: str, proxy: FaultProxy) -> tuple[dict[str, str], str, str]:
    """A second bucket as the replica, reached through the fault proxy."""
    replica, _ = _s3_settings(s3_endpoint)
    bucket, prefix = bucket_of(replica)
    extra = {
        "IMGPIPE_STORAGE_REPLICA_URL": replica["IMGPIPE_STORAGE_URL"],
        "IMGPIPE_REPLICA_S3_ENDPOINT_URL": f"http://{proxy.address}",
    }
    return extra, bucket, prefix


def _replica_sha(endpoint: str, bucket: str, prefix: str, sha: str) -> str | None:
    s3 = s3_client(endpoint)
    try:
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}/originals/{sha[:2]}/{sha}")["Body"]
    except s3.exceptions.NoSuchKey:
        return None
    return hashlib.sha256(body.read()).hexdigest()


def test_replica_written_before_the_202_refused_while_down_then_healed_and_verified(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    s3_endpoint: str,
    replica_proxy: FaultProxy,
) -> None:
    """On the scale-out stack (api + worker, PostgreSQL, Redis, S3) with a replica bucket."""
    import contextlib

    with contextlib.ExitStack() as stack:
        settings, lister = backend_settings(REDIS_PG_S3, stack, request)
        server = ImgpipeServer(tmp_path / "stack", REDIS_PG_S3, settings, lister)
        # First without a replica: this image's original exists in one copy only.
        server.start()
        stack.callback(server.stop)
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            early = upload_and_wait(client, images.unique_png(seed=1420, size=(400, 300)), "e.png")
        server.stop()

        extra, bucket, prefix = _replica_settings(s3_endpoint, replica_proxy)
        early_sha = early["original"]["sha256"]
        assert _replica_sha(s3_endpoint, bucket, prefix, early_sha) is None
        server.settings.update(extra)
        server.start()  # its sweep (at start, then every STORAGE_SWEEP_S) heals the replica
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            data = images.unique_png(seed=1421, size=(400, 300))
            accepted = upload_ok(client, data, "r.png")
            sha = accepted["original"]["sha256"]
            # Durable in both before the answer came.
            assert _replica_sha(s3_endpoint, bucket, prefix, sha) == sha

            replica_proxy.set(Fault.REFUSE)
            down = images.unique_png(seed=1422, size=(400, 300))
            assert_problem(upload(client, down, "down.png"), 503, "storage_unavailable")
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["replica"] == "error: storage_unavailable"

            replica_proxy.set(Fault.PASS)
            assert_done(upload_and_wait(client, down, "down.png"))
            down_sha = hashlib.sha256(down).hexdigest()
            assert _replica_sha(s3_endpoint, bucket, prefix, down_sha) == down_sha

        # The image from before the replica: the sweep copied what the replica missed.
        swept = server.cli("storage", "sweep")
        assert swept.returncode == 0, swept.stderr
        assert _replica_sha(s3_endpoint, bucket, prefix, early_sha) == early_sha

        verified = server.cli("storage", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert json.loads(verified.stdout)["checked"] >= 3

        # A replica that lost an object (or holds damaged bytes) fails verification...
        s3_client(s3_endpoint).put_object(
            Bucket=bucket, Key=f"{prefix}/originals/{sha[:2]}/{sha}", Body=b"damaged"
        )
        broken = server.cli("storage", "verify")
        assert broken.returncode == 1
        assert any("replica" in p and sha in p for p in json.loads(broken.stdout)["problems"])
        # ...and --repair copies the good one back.
        repaired = server.cli("storage", "verify", "--repair")
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        assert _replica_sha(s3_endpoint, bucket, prefix, sha) == sha


def test_sweeps_remove_orphan_originals_and_killed_workers_temp_files(
    s3_serve: Callable[..., ImgpipeServer], s3_endpoint: str, tmp_path: Path
) -> None:
    temp_dir = tmp_path / "tmp"
    temp_dir.mkdir()
    stale = temp_dir / "imgpipe-s3-left-by-a-killed-worker"
    stale.write_bytes(b"x" * 1000)
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    young = temp_dir / "imgpipe-s3-in-use"
    young.write_bytes(b"y")
    probe, _ = _s3_settings(s3_endpoint)
    bucket, prefix = bucket_of(probe)
    # An original whose upload's answer was lost: stored, never recorded.
    orphan_sha = hashlib.sha256(b"orphan").hexdigest()
    orphan_key = f"{prefix}/originals/{orphan_sha[:2]}/{orphan_sha}"
    s3_client(s3_endpoint).put_object(Bucket=bucket, Key=orphan_key, Body=b"orphan")

    server = s3_serve(
        {
            **probe,
            "IMGPIPE_ORPHAN_GRACE_S": "0",
            "IMGPIPE_STORAGE_SWEEP_S": "1",
            "TMPDIR": str(temp_dir),
        }
    )
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        kept = upload_and_wait(client, images.unique_png(seed=1430, size=(300, 200)), "k.png")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
            _metric(server.base_url, "imgpipe_orphan_originals_removed_total") < 1
            or _metric(server.base_url, "imgpipe_temp_files_removed_total") < 1
        ):
            time.sleep(0.5)
        assert _metric(server.base_url, "imgpipe_orphan_originals_removed_total") >= 1
        assert _metric(server.base_url, "imgpipe_temp_files_removed_total") >= 1
        assert not stale.exists()
        assert young.exists()  # may be in use: left alone
        assert not any(orphan_sha in k for k in server.stored_keys())
        # A recorded original is never an orphan.
        assert client.get(f"/v1/images/{kept['id']}/original").status_code == 200


def test_soft_delete_then_purge_on_every_backend(
    client: httpx.Client, server: ImgpipeServer
) -> None:
    """The shared servers keep deleted images for 0 s: hidden at once, gone at the sweep."""
    resource = upload_and_wait(client, images.unique_png(seed=1440, size=(300, 200)), "s.png")
    image_id, sha = resource["id"], resource["original"]["sha256"]
    assert client.delete(f"/v1/images/{image_id}").status_code == 204
    assert_problem(client.get(f"/v1/images/{image_id}"), 404, "not_found")
    assert_problem(client.get(f"/v1/images/{image_id}/variants/thumbnail"), 404, "not_found")
    # Past its (zero) retention: no longer restorable, and the sweep purges the bytes.
    assert_problem(client.post(f"/v1/admin/images/{image_id}/restore"), 404, "not_found")
    swept = server.cli("storage", "sweep")
    assert swept.returncode == 0, swept.stderr
    assert not any(sha in key.replace("/", "") for key in server.stored_keys())
