"""Near-duplicates by perceptual hash: Hamming distance and the band index that finds
candidates without reading every image of an owner.

Multi-index hashing (Norouzi, Punjani and Fleet, 2012): the 64-bit pHash is cut into four
16-bit bands, each stored in its own indexed column. If two hashes differ in at most d
bits, by pigeonhole at least one band differs in at most d // 4 bits. So probing, for each
band, the query's value and every value within d // 4 bit flips of it finds every hash
within d; the true distance is then checked in code.
"""

from __future__ import annotations

from itertools import combinations

BANDS = 4
BAND_BITS = 16
# Chosen by measurement (bench/near_duplicates_bench.py, bench/README.md): resized,
# re-encoded, lightly cropped and brightened copies of the corpus photos against the
# other photos.
DEFAULT_MAX_DISTANCE = 10
# Up to 11 each band is probed within 2 bits: 137 values a band. Beyond, a probe would
# scan a large share of an owner's images, and hashes that far apart are other pictures.
MAX_DISTANCE = 11


def parse(phash: str) -> int | None:
    """The pHash as an integer, or None if it is not 16 hex digits."""
    if len(phash) != 16:
        return None
    try:
        return int(phash, 16)
    except ValueError:
        return None


def bands(value: int) -> tuple[int, ...]:
    """The four 16-bit bands, most significant first."""
    mask = (1 << BAND_BITS) - 1
    return tuple(value >> (BAND_BITS * (BANDS - 1 - i)) & mask for i in range(BANDS))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def band_probes(band: int, max_distance: int) -> list[int]:
    """Every band value within max_distance // BANDS bit flips of band, band first."""
    radius = max_distance // BANDS
    probes = [band]
    for flips in range(1, radius + 1):
        for bits in combinations(range(BAND_BITS), flips):
            value = band
            for bit in bits:
                value ^= 1 << bit
            probes.append(value)
    return probes
