"""The deadline: its libvips hook outlives the Python wrappers of the images it watches,
and a stop asked from outside (a soft time limit) expires it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import pyvips

from imgpipe.domain.errors import ProcessTimeout
from imgpipe.domain.interrupts import request_stop
from imgpipe.engine.deadline import Deadline

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
        # Tall enough that libvips reports progress many times before it is done, on a
        # loaded machine too (a 64x3200 image sometimes finished first).
        watched = deadline.watch(pyvips.Image.black(256, 16000).linear(1, 1))
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


def test_a_stop_asked_from_outside_expires_the_work_begun_before_it_only() -> None:
    # A worker's soft time limit records the stop (its raise may land inside a libvips
    # log callback, where cffi swallows it): the work in progress still stops, inside
    # libvips too, and the next task's deadline starts clean.
    running, unbounded = Deadline(600), Deadline(None)
    watched = running.watch(pyvips.Image.black(64, 3200).linear(1, 1))
    request_stop("soft time limit")
    assert running.expired and unbounded.expired
    with pytest.raises(ProcessTimeout, match=r"soft time limit \(at step encode\)"):
        running.check("encode")
    with pytest.raises(pyvips.Error):
        watched.gaussblur(2).cast("uchar").webpsave_buffer()
    following = Deadline(600)
    assert not following.expired
    following.check("decode")
