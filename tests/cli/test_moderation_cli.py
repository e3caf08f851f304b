"""`imgpipe worker --queues` and a moderation backend that cannot start, as a user meets them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from imgpipe.cli.main import _worker_queues
from imgpipe.config import Settings


def test_a_worker_consumes_moderation_only_when_it_is_on() -> None:
    # Re-handed and retried image jobs (the recovery queue) come before the backlog.
    assert _worker_queues(Settings(), None) == "imgpipe.recover,imgpipe.process,imgpipe.webhooks"
    on = Settings(moderation="rekognition", queue_name="q")
    assert _worker_queues(on, None) == "q.recover,q.process,q.webhooks,q.moderate"
    assert _worker_queues(on, "moderate") == "q.moderate"
    with pytest.raises(typer.Exit):
        _worker_queues(on, "variants")


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["moderation", "list"]])
def test_a_missing_model_stops_the_start_and_names_the_setting(
    tmp_path: Path, command: list[str]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGPIPE_")}
    env.update(
        IMGPIPE_DATA_DIR=str(tmp_path / "data"),
        IMGPIPE_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
        IMGPIPE_STORAGE_URL=f"file://{tmp_path / 'objects'}",
        IMGPIPE_MODERATION="nudenet",
        IMGPIPE_NUDENET_MODEL=str(tmp_path / "absent.onnx"),
    )
    result = subprocess.run(
        [sys.executable, "-m", "imgpipe", *command],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "IMGPIPE_NUDENET_MODEL" in result.stderr and "absent.onnx" in result.stderr
    assert "Traceback" not in result.stderr
