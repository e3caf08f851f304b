"""Optional packages the tests need: `make test` installs every extra, so in CI a missing
one fails the test that needs it; on a laptop without it, that test is skipped."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def require(module: str, extra: str) -> ModuleType:
    """``module``, which the ``extra`` extra installs; fail in CI without it, else skip."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        message = f"{module} (the {extra} extra) is not installed: {exc}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI must test with every extra)")
        pytest.skip(message)
