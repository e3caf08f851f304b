"""The deadline's libvips hook outlives the Python wrappers of the images it watches."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Run in a child: without the fix the failure is a fatal error that aborts the process
# (a freed pyvips callback handle), which would take the test runner down with it.
_CHILD = textwrap.dedent(
    """
    import gc, time
    import pyvips
    from imgpipe.engine.deadline import Deadline

    deadline = Deadline(0.001)
    time.sleep(0.01)
    outcomes = []
    for _ in range(20):
        watched = deadline.watch(pyvips.Image.black(64, 3200).linear(1, 1))
        derived = watched.gaussblur(2).cast("uchar")
        del watched  # as the runner rebinds `image` from step to step
        gc.collect()
        junk = [object() for _ in range(100_000)]  # reuse the freed memory
        try:
            derived.webpsave_buffer()
            outcomes.append("encoded")
        except pyvips.Error:
            outcomes.append("stopped")
    print(" ".join(sorted(set(outcomes))))
    """
)


def test_an_image_made_from_a_watched_one_is_stopped_after_the_wrapper_is_gone() -> None:
    # libvips raises the progress signal of a derived image on the watched one; a
    # mutated animated GIF once killed the whole serve process this way.
    child = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=120
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split() == ["stopped"]
