"""A poison image: its worker process dies on every attempt, like a decoder segfault.

Two workers run through ``poison_worker.py`` (the real `imgpipe worker` CLI, with the
engine's ``render_variants`` wrapped to SIGKILL its own process when the original holds
the marker). One poison PNG and 20 normal ones are uploaded. The poison image must end
`failed` after exactly MAX_ATTEMPTS claims, every variant with code `worker_lost`, and be
dead-lettered with its history (`imgpipe dlq list --json`, GET /v1/admin/dead-letters);
the others end `done` at their first attempt. `imgpipe dlq retry` gives it fresh
attempts, and it is dead-lettered again after exactly MAX_ATTEMPTS more claims.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from backends import REDIS_URL, check_broker, purge_queue
from faults.poison_worker import POISON
from faults.stack import (
    FAST_JOBS,
    Stack,
    fetch_images,
    noise_png,
    queue_name,
    report,
    running_stack,
    upload_all,
    wait_all_terminal,
)
from integration.conftest import BUILT_IN_PROFILES, TERMINAL_STATUSES

MAX_ATTEMPTS = int(FAST_JOBS["IMGPIPE_MAX_ATTEMPTS"])
LEASE_S = float(FAST_JOBS["IMGPIPE_LEASE_S"])
RECONCILE_S = float(FAST_JOBS["IMGPIPE_RECONCILE_S"])
NORMAL = 20
# Each attempt: a claim, a kill, the lease running out, a reconciler round, a hand-out.
FAIL_WITHIN_S = MAX_ATTEMPTS * (LEASE_S + 2 * RECONCILE_S + 2.0) + 10.0
WRAPPER = Path(__file__).with_name("poison_worker.py")


def _dlq(stack: Stack, *args: str) -> list[dict[str, Any]]:
    listed = stack.cli("dlq", "list", "--json", *args)
    assert listed.returncode == 0, f"imgpipe dlq list: {listed.stderr}"
    entries: list[dict[str, Any]] = json.loads(listed.stdout)
    return entries


def _wait_settled(
    client: httpx.Client, image_id: str, after: float
) -> tuple[dict[str, Any], float]:
    """Poll until the image is terminal (asserting within FAIL_WITHIN_S of ``after``)."""
    resource: dict[str, Any] = {}
    while time.monotonic() - after < FAIL_WITHIN_S:
        resource = client.get(f"/v1/images/{image_id}").json()
        if resource["status"] in TERMINAL_STATUSES:
            return resource, time.monotonic() - after
        time.sleep(0.2)
    raise AssertionError(f"poison image not settled within {FAIL_WITHIN_S:.0f}s: {resource}")


def _assert_dead_after_max_attempts(resource: dict[str, Any]) -> None:
    assert resource["status"] == "failed", resource
    assert set(resource["variants"]) == set(BUILT_IN_PROFILES)
    for name, variant in resource["variants"].items():
        assert variant["status"] == "failed", (name, variant)
        assert variant["attempts"] == MAX_ATTEMPTS, (name, variant)
        assert variant["error"]["code"] == "worker_lost", (name, variant)


ENTRY_FIELDS = {
    "id",
    "image_id",
    "owner",
    "variants",
    "attempts",
    "error_code",
    "error",
    "created_at",
    "retried_at",
    "history",
}
ATTEMPT_FIELDS = {
    "attempt",
    "worker",
    "claimed_at",
    "finished_at",
    "outcome",
    "error_code",
    "error",
}


def _assert_entry(entry: dict[str, Any], image_id: str) -> None:
    """A dead letter of the poison image: its own MAX_ATTEMPTS lost attempts, no others."""
    assert set(entry) >= ENTRY_FIELDS, entry
    assert all(set(attempt) >= ATTEMPT_FIELDS for attempt in entry["history"]), entry
    assert entry["image_id"] == image_id and entry["owner"] == "default", entry
    assert entry["id"].startswith("dlq_"), entry
    assert sorted(entry["variants"]) == sorted(BUILT_IN_PROFILES), entry
    assert entry["attempts"] == MAX_ATTEMPTS, entry
    assert entry["error_code"] == "worker_lost" and entry["error"], entry
    history = entry["history"]
    # Attempts 1..MAX_ATTEMPTS, each lost, by some worker; a retried dead letter's
    # attempts belong to that earlier entry, not to this one.
    assert [h["attempt"] for h in history] == list(range(1, MAX_ATTEMPTS + 1)), history
    for attempt in history:
        assert attempt["outcome"] == "lost", attempt
        assert attempt["error_code"] == "worker_lost", attempt
        assert attempt["worker"] and attempt["claimed_at"] and attempt["finished_at"], attempt


@pytest.mark.slow
@pytest.mark.timeout(3 * FAIL_WITHIN_S + 120)
def test_a_poison_image_is_dead_lettered_after_exactly_max_attempts(tmp_path: Path) -> None:
    check_broker(REDIS_URL)
    queue = queue_name()
    settings = {
        "IMGPIPE_BROKER_URL": REDIS_URL,
        "IMGPIPE_QUEUE_NAME": queue,
        "IMGPIPE_STORAGE_URL": f"file://{tmp_path / 'data' / 'objects'}",
        **FAST_JOBS,
    }
    poison = noise_png(seed=1, text=POISON.decode())
    assert POISON in poison
    normal = [noise_png(seed=100 + n) for n in range(NORMAL)]
    started = time.monotonic()
    try:
        with (
            running_stack(tmp_path / "data", settings) as stack,
            httpx.Client(base_url=stack.base_url, timeout=60) as client,
        ):
            stack.start_api()
            for n in (1, 2):
                stack.start_worker(f"worker{n}", concurrency=2, script=WRAPPER)
            stack.wait_workers_ready(2)
            for role in stack.workers():
                log = stack.log_path(role).read_text()
                assert "render_variants patched in" in log, log

            uploaded = time.monotonic()
            poison_id = upload_all(stack.base_url, [poison], prefix="poison")[0]
            normal_ids = upload_all(stack.base_url, normal, prefix="normal")

            # The others are not held up by it.
            seen, normal_s = wait_all_terminal(client, normal_ids, timeout=60)
            assert set(seen.values()) == {"done"}, seen
            for resource in fetch_images(stack.base_url, normal_ids):
                attempts = {n: v["attempts"] for n, v in resource["variants"].items()}
                assert set(attempts.values()) == {1}, (resource["id"], attempts)

            dead, failed_s = _wait_settled(client, poison_id, uploaded)
            _assert_dead_after_max_attempts(dead)

            entries = [e for e in _dlq(stack) if e["image_id"] == poison_id]
            assert len(entries) == 1, entries
            entry = entries[0]
            _assert_entry(entry, poison_id)
            listed = client.get("/v1/admin/dead-letters")
            assert listed.status_code == 200, listed.text
            api_entries = [e for e in listed.json()["items"] if e["image_id"] == poison_id]
            assert [e["id"] for e in api_entries] == [entry["id"]], api_entries
            assert api_entries[0] == entry, (api_entries[0], entry)  # one view, two doors

            # Retry from the CLI: fresh attempts, handed out by the reconciler.
            retried = stack.cli("dlq", "retry", entry["id"])
            assert retried.returncode == 0, retried.stderr
            retry_at = time.monotonic()
            after = client.get(f"/v1/images/{poison_id}").json()
            assert after["status"] in ("pending", "processing"), after
            assert all(v["attempts"] <= 1 for v in after["variants"].values()), after
            assert not [e for e in _dlq(stack) if e["image_id"] == poison_id]

            again, refailed_s = _wait_settled(client, poison_id, retry_at)
            _assert_dead_after_max_attempts(again)
            second = [e for e in _dlq(stack) if e["image_id"] == poison_id]
            assert len(second) == 1 and second[0]["id"] != entry["id"], second
            _assert_entry(second[0], poison_id)
            everything = {e["id"]: e for e in _dlq(stack, "--all")}
            assert everything[entry["id"]]["retried_at"] is not None, everything

            # Still nothing else disturbed.
            assert set(wait_all_terminal(client, normal_ids, timeout=5)[0].values()) == {"done"}
            kills = sum(
                stack.log_path(role).read_text().count("exited with 'signal 9")
                for role in stack.workers()
            )
    finally:
        for suffix in ("process", "recover", "webhooks"):
            purge_queue(REDIS_URL, f"{queue}.{suffix}")
    report(
        "poison image",
        {
            "poison failed after": f"{failed_s:.1f}s ({MAX_ATTEMPTS} claims, worker_lost)",
            "again after dlq retry": f"{refailed_s:.1f}s ({MAX_ATTEMPTS} more claims)",
            "pool processes killed by it": kills,
            "other images": f"{NORMAL}/{NORMAL} done at attempt 1 in {normal_s:.1f}s",
            "dead letters": f"{entry['id']} then {second[0]['id']}, each with its own 5 attempts",
            "total": f"{time.monotonic() - started:.1f}s",
        },
    )
