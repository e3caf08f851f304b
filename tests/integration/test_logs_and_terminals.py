"""What the processes print: where they listen, text logs that keep their fields, no
warning at a plain start, and one sentence where there is nothing to list.

The test servers log with IMGPIPE_LOG_FORMAT=text (conftest.server_env) into a file, which
is not a terminal: just what an operator's log collector sees.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from . import images
from .conftest import ImgpipeServer, run_cli, upload_ok


def test_the_http_process_says_where_it_listens(server: ImgpipeServer) -> None:
    # `serve` on the embedded backend, `api` on the others.
    assert f"http://127.0.0.1:{server.port}" in server.log_text()


def test_text_logs_keep_the_image_id(server: ImgpipeServer, client: httpx.Client) -> None:
    image_id = upload_ok(client, images.unique_png(seed=1301), "log.png")["id"]
    pattern = re.compile(rf"upload accepted .*image_id={image_id}\b.*bytes=\d+")
    deadline = time.monotonic() + 30
    while not pattern.search(server.log_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pattern.search(server.log_text()), server.log_tail()


def test_a_plain_start_prints_no_warning(server: ImgpipeServer) -> None:
    startup = server.log_text()
    assert "No hostname was supplied" not in startup
    assert " WARNING " not in startup, startup
    # Rich wrapped at 80 columns when not on a terminal, cutting this sentence in two.
    assert "loopback (127.0.0.1), so every request acts as one owner. Bind another" in startup


def test_an_empty_dead_letter_list_says_so_once(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "dlq", "list")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == ["imgpipe: no dead letters waiting for a retry"]
    everything = run_cli(tmp_path, "dlq", "list", "--all")
    assert everything.stderr.strip().splitlines() == ["imgpipe: no dead letters"]
