"""The first API key on an instance used in single-user mode: `keys create` says where the
earlier images went, and `imgpipe images reassign` hands them to the key's owner.

Real processes on a real SQLite file: a `serve` in single-user mode, then the CLI beside
it, as an operator would run them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from . import images
from .conftest import ImgpipeServer, run_cli, upload_ok


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _listed(base_url: str, key: str) -> list[str]:
    response = httpx.get(f"{base_url}/v1/images", headers=_bearer(key), timeout=30)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_the_first_key_tells_about_earlier_images_and_reassign_moves_them(
    spawn_server: Callable[[Path | None], ImgpipeServer], tmp_path: Path
) -> None:
    server = spawn_server(tmp_path / "data")
    with httpx.Client(base_url=server.base_url, timeout=30) as anonymous:
        earlier = [
            upload_ok(anonymous, images.unique_png(seed=seed), f"{seed}.png")["id"]
            for seed in (1201, 1202)
        ]

    created = run_cli(server.data_dir, "keys", "create", "--owner", "alice")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert created.stdout == key + "\n", "the key stays alone on stdout"
    told = created.stderr
    assert "2 image(s)" in told and "'default'" in told, told
    assert "imgpipe images reassign --from default --to alice" in told, told
    assert "imgpipe keys create --owner default" in told, told

    assert _listed(server.base_url, key) == []  # what the message warned about
    anonymous_now = httpx.get(f"{server.base_url}/v1/images", timeout=30)
    assert anonymous_now.status_code == 401

    moved = run_cli(server.data_dir, "images", "reassign", "--from", "default", "--to", "alice")
    assert moved.returncode == 0, moved.stderr
    assert "2 image(s) moved from owner 'default' to 'alice'" in moved.stderr
    assert sorted(_listed(server.base_url, key)) == sorted(earlier)
    original = httpx.get(
        f"{server.base_url}/v1/images/{earlier[0]}/original", headers=_bearer(key), timeout=30
    )
    assert original.status_code == 200

    again = run_cli(server.data_dir, "images", "reassign", "--to", "alice")  # --from: default
    assert again.returncode == 0 and "0 image(s) moved" in again.stderr

    second = run_cli(server.data_dir, "keys", "create", "--owner", "bob")
    assert second.returncode == 0
    assert "image(s)" not in second.stderr, "nothing is left with 'default' to tell about"


def test_no_message_when_a_key_for_default_already_sees_them(
    spawn_server: Callable[[Path | None], ImgpipeServer], tmp_path: Path
) -> None:
    server = spawn_server(tmp_path / "data")
    with httpx.Client(base_url=server.base_url, timeout=30) as anonymous:
        upload_ok(anonymous, images.unique_png(seed=1211), "a.png")
    for_default = run_cli(server.data_dir, "keys", "create", "--owner", "default")
    assert for_default.returncode == 0
    assert "image(s)" not in for_default.stderr  # this very key reaches them
    assert len(_listed(server.base_url, for_default.stdout.strip())) == 1
    other = run_cli(server.data_dir, "keys", "create", "--owner", "carol")
    assert "image(s)" not in other.stderr


def test_reassign_refuses_bad_owners(tmp_path: Path) -> None:
    same = run_cli(tmp_path, "images", "reassign", "--from", "alice", "--to", "alice")
    assert same.returncode == 2 and "both 'alice'" in same.stderr
    bad = run_cli(tmp_path, "images", "reassign", "--to", "no spaces please")
    assert bad.returncode == 2 and "owner name" in bad.stderr
