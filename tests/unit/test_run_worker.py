"""run_worker passes Celery's exit status on: a worker that could not start exits non-zero."""

from __future__ import annotations

from typing import Any

from celery import Celery, bootsteps

from imgpipe.jobs.celery_queue import run_worker


class _BrokenStep(bootsteps.StartStopStep):  # type: ignore[misc]  # celery is untyped
    """Fails while the worker starts, as a pool that cannot start its processes does."""

    def start(self, parent: Any) -> None:
        raise RuntimeError("cannot start")


def test_an_unrecoverable_start_error_is_a_non_zero_exit() -> None:
    app = Celery("exit-test", broker="memory://", set_as_current=False)
    app.steps["worker"].add(_BrokenStep)
    argv = ["worker", "--pool=solo", "--without-mingle", "--without-gossip", "--loglevel=CRITICAL"]
    assert run_worker(app, argv) == 1
