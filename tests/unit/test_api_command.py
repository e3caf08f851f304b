"""`imgpipe api` hands its keep-alive and proxy settings to uvicorn (docs/deploy.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from imgpipe.cli.main import app


def _run_api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str) -> dict[str, Any]:
    monkeypatch.setenv("IMGPIPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMGPIPE_DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    monkeypatch.setenv("IMGPIPE_STORAGE_URL", f"file://{tmp_path / 'objects'}")
    # A broker URL is required by `api`; nothing connects to it before uvicorn runs.
    monkeypatch.setenv("IMGPIPE_BROKER_URL", "redis://127.0.0.1:1/0")
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    migrated = CliRunner().invoke(app, ["db", "upgrade"])
    assert migrated.exit_code == 0, migrated.output
    result = CliRunner().invoke(app, ["api", *args])
    assert result.exit_code == 0, result.output
    return seen


def test_defaults_keep_connections_longer_than_a_load_balancer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen = _run_api(monkeypatch, tmp_path)
    assert seen["timeout_keep_alive"] == 75  # > AWS ALB's 60 s idle timeout
    assert seen["proxy_headers"] is False


def test_keep_alive_and_trusted_proxies_reach_uvicorn(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("IMGPIPE_KEEP_ALIVE_S", "120")
    assert _run_api(monkeypatch, tmp_path)["timeout_keep_alive"] == 120
    seen = _run_api(
        monkeypatch,
        tmp_path,
        "--keep-alive",
        "90",
        "--proxy-headers",
        "--forwarded-allow-ips",
        "10.0.0.5,10.0.1.0/24",
    )
    assert seen["timeout_keep_alive"] == 90
    assert seen["proxy_headers"] is True
    assert seen["forwarded_allow_ips"] == "10.0.0.5,10.0.1.0/24"
