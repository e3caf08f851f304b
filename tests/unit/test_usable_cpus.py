"""Thread defaults follow the CPUs a process may use, not the machine's count."""

from __future__ import annotations

import os
import subprocess
import sys

_CHILD = (
    "from imgpipe.config import Settings\ns = Settings()\nprint(s.workers, s.render_concurrency)\n"
)


def test_a_process_pinned_to_one_cpu_defaults_to_one_worker_and_one_render() -> None:
    # As in a container given a cpuset of one core on a larger machine.
    child = subprocess.run(
        [sys.executable, "-c", _CHILD],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}),
        env={k: v for k, v in os.environ.items() if not k.startswith("IMGPIPE_")},
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["1", "1"]
