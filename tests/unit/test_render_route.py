"""The render route's thread policy for lookups (api/routes_render.py: LookupThreads)."""

from __future__ import annotations

import anyio

from imgpipe.api.routes_render import LookupThreads


def observed(seconds: list[float]) -> int:
    """The limit after these lookups (the limiter lives in an event loop, as in the API)."""

    async def scenario() -> int:
        threads = LookupThreads()
        for value in seconds:
            threads.observe(value)
        return threads.limit

    return anyio.run(scenario)


def test_local_lookups_keep_two_threads() -> None:
    assert observed([]) == LookupThreads.LOCAL == 2
    assert observed([0.0003] * LookupThreads.WINDOW) == LookupThreads.LOCAL


def test_lookups_that_wait_on_a_network_get_many_threads() -> None:
    assert observed([0.015] * LookupThreads.WINDOW) == LookupThreads.REMOTE


def test_the_fastest_lookup_decides_so_contention_cannot_inflate_the_limit() -> None:
    # GIL waits make most local lookups look slow under load; one fast one shows the floor.
    slow_by_contention = [0.008] * (LookupThreads.WINDOW - 1) + [0.0004]
    assert observed(slow_by_contention) == LookupThreads.LOCAL


def test_the_limit_follows_a_change_of_store() -> None:
    window = LookupThreads.WINDOW
    assert observed([0.0003] * window + [0.02] * window) == LookupThreads.REMOTE
    assert observed([0.02] * window + [0.0003] * window) == LookupThreads.LOCAL
