"""The tables `imgpipe keys list`, `dlq list` and `moderation list` print."""

from __future__ import annotations

import pytest

from imgpipe.cli.common import err, print_table


def test_a_row_stays_on_one_line_when_the_output_is_a_pipe(
    capsys: pytest.CaptureFixture[str],
) -> None:
    image_id = "img_" + "7" * 40
    print_table(
        ("image", "owner", "labels", "created"),
        [(image_id, "owner-" + "a" * 30, "nudity 0.91, violence 0.12", "2026-12-04 17:00:00")],
    )
    lines = capsys.readouterr().out.splitlines()
    header = [line for line in lines if "image" in line and "created" in line]
    row = [line for line in lines if image_id in line]
    assert len(header) == 1 and len(row) == 1, lines
    assert "nudity 0.91, violence 0.12" in row[0] and "2026-12-04 17:00:00" in row[0]


def test_messages_go_to_standard_error_with_markup_rendered(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err.print("[red]imgpipe: setting IMGPIPE_X: bad[/red]")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == "imgpipe: setting IMGPIPE_X: bad"
