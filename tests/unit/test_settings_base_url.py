"""API_BASE_URL: checked at start, kept without a trailing slash."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from imgpipe.config import Settings


def test_a_base_url_loses_its_trailing_slash() -> None:
    assert Settings(api_base_url="https://img.example.com/api/").api_base_url == (
        "https://img.example.com/api"
    )
    assert Settings().api_base_url == ""


@pytest.mark.parametrize(
    "value", ["img.example.com", "ftp://img.example.com", "https://", "https://a.example/?x=1"]
)
def test_a_base_url_that_is_not_one_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="api_base_url"):
        Settings(api_base_url=value)
