"""The pHash band index finds every hash within the distance (pigeonhole), and the
probes stay few enough for an index lookup."""

from __future__ import annotations

import random

import pytest

from imgpipe.domain import similarity


def test_bands_and_parse_round_trip() -> None:
    value = similarity.parse("0123456789abcdef")
    assert value == 0x0123456789ABCDEF
    assert similarity.bands(value) == (0x0123, 0x4567, 0x89AB, 0xCDEF)
    for bad in ("", "0123", "0123456789abcdeg", "0123456789abcdef0"):
        assert similarity.parse(bad) is None


@pytest.mark.parametrize("distance", range(similarity.MAX_DISTANCE + 1))
def test_every_hash_within_the_distance_shares_a_probed_band(distance: int) -> None:
    rng = random.Random(distance)
    for _ in range(300):
        query = rng.getrandbits(64)
        other = query
        for bit in rng.sample(range(64), distance):
            other ^= 1 << bit
        probes = [set(similarity.band_probes(b, distance)) for b in similarity.bands(query)]
        hit = any(b in p for b, p in zip(similarity.bands(other), probes, strict=True))
        assert hit, f"{query:016x} and {other:016x} differ in {distance} bits"


def test_the_probe_count_grows_only_with_the_radius() -> None:
    assert len(similarity.band_probes(0xBEEF, 3)) == 1
    assert len(similarity.band_probes(0xBEEF, 7)) == 1 + 16
    assert len(similarity.band_probes(0xBEEF, 11)) == 1 + 16 + 120
    assert len(set(similarity.band_probes(0xBEEF, 11))) == 137
    assert similarity.DEFAULT_MAX_DISTANCE <= similarity.MAX_DISTANCE
