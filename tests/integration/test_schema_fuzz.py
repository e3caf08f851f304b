"""Schemathesis over the OpenAPI document, against a real `imgpipe serve`.

Bounded and repeatable: every operation gets ``MAX_EXAMPLES`` generated requests that
fit the schema and as many that break it (hypothesis, derandomised), a few hundred calls
in all. Any server error, any status the document does not list for the operation, any
body or content type that breaks the document, and a 405 without ``Allow`` fail the
test. Single-user mode, so every route is reached past auth; the rate limits are high
so no 429 hides a route.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from schemathesis.core.result import Err

from .conftest import ImgpipeServer

MAX_EXAMPLES = 12
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    unsupported_method,
]
# Not `negative_data_rejection`: the schema declares the bearer key (for /docs), and
# single-user mode, which lets every route be reached, rightly accepts a request without
# one; every other malformed request is still checked for a documented 4xx, never a 5xx.


@pytest.fixture(scope="module")
def schema_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImgpipeServer]:
    server = ImgpipeServer(Path(tmp_path_factory.mktemp("imgpipe-schema")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_every_operation_keeps_to_its_schema(schema_server: ImgpipeServer) -> None:
    base_url = schema_server.base_url
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        if isinstance(result, Err):  # the schema itself does not load: say why
            failures.append(f"schema: {result.err()}")
            continue
        operation: Any = result.ok()
        for mode in GenerationMode:

            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                nonlocal calls
                calls += 1
                response = case.call(base_url=base_url, timeout=30)
                case.validate_response(response, checks=CHECKS)

            try:
                run()
            except Unsatisfiable:
                pass  # no parameters to break (GET /healthz), or none that can be broken
            except BaseException as exc:  # hypothesis raises an exception group
                if isinstance(exc, KeyboardInterrupt):
                    raise
                failures.append(
                    f"{operation.method.upper()} {operation.path} ({mode.value}): {str(exc)[:1500]}"
                )
    print(f"\nFIGURES schemathesis: {calls} calls, {len(failures)} failing operations")
    assert not failures, "\n\n".join(failures)
    assert "Traceback" not in schema_server.log_text()
