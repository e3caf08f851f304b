"""`imgpipe process` as a user runs it: a real subprocess over a folder of real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imgpipe", "process", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    (root / "trip" / "day1").mkdir(parents=True)
    Image.effect_noise((1200, 900), 30).convert("RGB").save(root / "trip" / "day1" / "a.jpg")
    Image.new("RGBA", (640, 480), (0, 128, 255, 128)).save(root / "trip" / "b.png")
    Image.new("RGB", (40, 30), "red").save(root / "tiny.webp")
    (root / ".hidden.jpg").write_bytes(b"not even looked at")
    return root


@pytest.mark.parametrize("workers", ["1", "2"])
def test_writes_every_profile_under_the_relative_path(
    photos: Path, tmp_path: Path, workers: str
) -> None:
    out = tmp_path / "out"
    result = _run(str(photos), "--out", str(out), "--workers", workers, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["images"], summary["succeeded"], summary["failed"]) == (3, 3, 0)
    assert summary["bytes_out"] > 0 and summary["seconds"] > 0
    for stem in ("trip/day1/a", "trip/b", "tiny"):
        for profile in ("thumbnail", "medium", "large"):
            assert Image.open(out / stem / f"{profile}.webp").format == "WEBP"
    assert Image.open(out / "trip/day1/a/medium.webp").size == (800, 600)
    assert Image.open(out / "tiny/large.webp").size == (40, 30)  # never upscaled
    assert not (out / ".hidden").exists()


def test_failures_are_reported_with_reasons_and_exit_1(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    Image.new("RGB", (300, 200), "blue").save(root / "good.jpg")
    (root / "notes.jpg").write_text("just text")
    full = (root / "good.jpg").read_bytes()
    (root / "cut.jpg").write_bytes(full[: len(full) // 2])
    out = tmp_path / "out"
    result = _run(str(root), "--out", str(out), "--json", cwd=tmp_path)
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    codes = {Path(f["source"]).name: f["code"] for f in summary["failures"]}
    assert codes == {"notes.jpg": "unsupported_type", "cut.jpg": "corrupt_image"}
    assert (out / "good" / "medium.webp").exists()
    assert not (out / "cut").exists()
    # With --json into a pipe there is no progress bar, but each failure is still said
    # on standard error, one line each, and stdout holds the JSON alone.
    failed_lines = sorted(line for line in result.stderr.splitlines() if line.startswith("failed"))
    assert len(failed_lines) == 2, result.stderr
    assert failed_lines[0].startswith(f"failed {root / 'cut.jpg'}: corrupt_image: The JPEG")
    assert failed_lines[1].startswith(f"failed {root / 'notes.jpg'}: unsupported_type: ")


def test_profiles_option_limits_the_outputs(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _run(
        str(photos / "tiny.webp"), "--out", str(out), "--profiles", "thumbnail", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (out / "tiny").iterdir()) == ["thumbnail.webp"]
    assert "images" in result.stdout  # the human summary


@pytest.mark.parametrize(
    "args",
    [["/no/such/folder", "--out", "x"], ["--out", "x"], [".", "--out", "x", "--profiles", "huge"]],
)
def test_bad_usage_exits_2(tmp_path: Path, args: list[str]) -> None:
    assert _run(*args, cwd=tmp_path).returncode == 2


def test_paths_are_never_wrapped_when_the_output_is_not_a_terminal(tmp_path: Path) -> None:
    # Rich wraps at 80 columns when stdout or stderr is a pipe or a file; a path cut in
    # two cannot be copied or grepped.
    deep = tmp_path / "in" / "holiday-photos-from-the-long-summer" / "day-one[best]-and-more"
    deep.mkdir(parents=True)
    bad = deep / "a-rather-long-file-name-that-is-not-an-image-at-all.jpg"
    bad.write_text("just text")
    assert len(str(bad)) > 120
    result = _run(str(tmp_path / "in"), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 1
    # Each stream names the whole path on one line ("[best]" is text, not Rich markup).
    assert f"failed {bad}: unsupported_type" in result.stderr.splitlines()[0], result.stderr
    assert any(line.startswith(f"  {bad}: unsupported_type") for line in result.stdout.splitlines())


def test_a_profile_with_a_watermark_reads_it_from_watermarks_dir(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    Image.new("RGB", (400, 300), (20, 20, 200)).save(root / "blue.png")
    marks = tmp_path / "marks"
    marks.mkdir()
    Image.new("RGBA", (100, 100), (255, 255, 255, 255)).save(marks / "logo.png")
    (tmp_path / "profiles.toml").write_text(
        '[profiles.marked]\nwidth = 400\nheight = 300\nwm = "logo,nw,1"\nformats = ["png"]\n'
    )
    env_file = tmp_path / "imgpipe.toml"
    env_file.write_text(
        f'profiles_file = "{tmp_path / "profiles.toml"}"\nwatermarks_dir = "{marks}"\n'
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "imgpipe",
            "process",
            str(root),
            "--out",
            str(tmp_path / "out"),
            "--profiles",
            "marked",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "IMGPIPE_CONFIG": str(env_file)},
    )
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "out" / "blue" / "marked.png") as out:
        assert out.convert("RGB").getpixel((20, 20)) == (255, 255, 255)  # the mark, top left
        assert out.convert("RGB").getpixel((300, 250)) == (20, 20, 200)


# What a batch must not load: each is a server's (database, queue, API) or quality=auto's,
# and together they cost a second of start-up on every `imgpipe process`, which on a
# folder of a dozen photos is a fifth of the run (bench/process_bench.py).
_SERVER_ONLY_MODULES = ("sqlalchemy", "alembic", "celery", "kombu", "fastapi", "numpy")


# What a --json run into a pipe with one worker must not load: it shows no progress bar
# and forks no pool (Rich and multiprocessing cost about 30 ms, a tenth of start-up).
_BAR_AND_POOL_MODULES = ("rich.console", "rich.progress", "multiprocessing")


def _loaded_by_a_batch(args: list[str], modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` an `imgpipe process` with ``args`` has loaded when it ends."""
    child = (
        "import runpy, sys\n"
        f"sys.argv = ['imgpipe', 'process', *{args!r}]\n"
        "try:\n"
        "    runpy.run_module('imgpipe', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        f"loaded = [m for m in {modules!r} if m in sys.modules]\n"
        "print('LOADED:', *loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1].split()[1:]


def test_a_batch_loads_nothing_only_a_server_needs(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [str(photos), "--out", str(out), "--workers", "1"]
    assert _loaded_by_a_batch(args, _SERVER_ONLY_MODULES) == []
    assert (out / "tiny" / "large.webp").exists()


def test_a_json_batch_into_a_pipe_loads_no_progress_bar_or_pool(
    photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = [str(photos), "--out", str(out), "--workers", "1", "--json"]
    assert _loaded_by_a_batch(args, _BAR_AND_POOL_MODULES) == []
    assert (out / "tiny" / "large.webp").exists()
