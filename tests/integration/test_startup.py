"""How `imgpipe serve` starts: single-user on loopback, refusal elsewhere without keys."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .conftest import ImgpipeServer, run_cli


def test_loopback_serve_announces_single_user_mode(server: ImgpipeServer) -> None:
    log = re.sub(r"\s+", " ", server.log_text()[:20_000]).lower()
    assert "single-user" in log, f"no single-user notice in the start-up output:\n{log[:2000]}"


def test_serve_on_a_public_address_without_keys_refuses_to_start(tmp_path: Path) -> None:
    try:
        result = run_cli(tmp_path, "serve", "--host", "0.0.0.0", "--port", "0", timeout=30)
    except subprocess.TimeoutExpired as exc:  # pragma: no cover - the failure being reported
        raise AssertionError("serve --host 0.0.0.0 with no API key kept running") from exc

    output = re.sub(r"\s+", " ", result.stdout + result.stderr).lower()
    assert result.returncode != 0, f"exit status 0; output: {output}"
    assert "key" in output, f"the refusal does not say why (API keys): {output}"
