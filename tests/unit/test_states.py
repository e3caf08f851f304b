from __future__ import annotations

import pytest

from imgpipe.domain.states import ImageStatus, VariantStatus, rollup

P, R, D, F = (
    VariantStatus.PENDING,
    VariantStatus.PROCESSING,
    VariantStatus.DONE,
    VariantStatus.FAILED,
)


@pytest.mark.parametrize(
    ("variants", "expected"),
    [
        ([P, P], ImageStatus.PENDING),
        ([P, R], ImageStatus.PROCESSING),
        ([D, P], ImageStatus.PROCESSING),
        ([D, D], ImageStatus.DONE),
        ([D, F], ImageStatus.PARTIAL),
        ([F, F], ImageStatus.FAILED),
    ],
)
def test_rollup(variants: list[VariantStatus], expected: ImageStatus) -> None:
    assert rollup(variants) is expected
