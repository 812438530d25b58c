"""schemathesis fuzzing of the OpenAPI schema against the real server: no request may give a 500.

Bounded: a few positive and negative examples per operation (seconds on the tiny store). The
schemathesis pytest plugin is not used (it does not support this pytest); each operation's
hypothesis strategy is driven directly.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="fuzzing needs schemathesis (test extra)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

EXAMPLES = 5


@pytest.fixture(scope="module")
def operations(server):
    schema = schemathesis.openapi.from_url(f"{server.url}/api/v1/openapi.json")
    return [r.ok() for r in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_no_server_errors(operations, server, mode):
    assert len(operations) >= 20
    failures: list[str] = []
    for op in operations:

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        def run(case):
            response = case.call(base_url=server.url, timeout=60)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.query} -> {response.status_code} {response.text[:300]}")
            case.validate_response(response, checks=[not_a_server_error])

        try:
            run()
        except Unsatisfiable:  # no invalid input exists for this operation (negative mode)
            continue
        except Exception as exc:  # schemathesis reports the failing check; keep going to list all
            failures.append(f"{op.label}: {type(exc).__name__}: {str(exc)[:300]}")
    assert not failures, "\n".join(failures)
