"""schemathesis fuzzing of the OpenAPI schema against the real server: no request may give a 500,
and the document agrees with behaviour (schemathesis's conformance checks).

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
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

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


@schemathesis.check
def schema_valid_not_refused_by_validation(ctx, response, case):
    """Positive mode: a request the schema allows is never refused by the server's own request
    validation (400 ``malformed_json`` / 422 ``invalid_request``). Refusals of well-formed requests
    that cannot be run (unknown sort column, no gene in the space: 422 ``invalid_gene_set`` ...) are
    documented on every route and checked against the error schema by the conformance checks."""
    if response.status_code in (400, 422):
        try:
            code = response.json()["error"]["code"]
        except Exception:
            code = None
        if code in ("invalid_request", "malformed_json", None):
            raise AssertionError(f"schema-valid request refused by validation: {response.status_code} {response.text[:300]}")
    return None


CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_openapi_document_matches_behaviour(operations, server, mode):
    """schemathesis's conformance checks: every status code answered is documented, every body
    (errors included) matches its documented schema and content type; schema-valid requests are
    accepted (or refused only for documented reasons), schema-violating JSON requests are refused.

    Negative mode skips multipart uploads: a multipart part is bytes, so a "wrong type" generated
    for it (the integer 600 as the file) is still a valid file and rightly accepted.

    Covered: the native API (/api/v1) except the workbench's file downloads (``/export``,
    ``/download-all``). The CLUE-compatible routes (/api/perts, /api/jobs, ...) answer in CLUE's
    LoopBack error format by design, not the native one; they are tested in test_clue_*.py."""
    extra = schema_valid_not_refused_by_validation if mode == GenerationMode.POSITIVE else negative_data_rejection
    failures: list[str] = []
    for op in operations:
        if mode == GenerationMode.NEGATIVE and op.label.startswith("POST /api/v1/genesets/"):
            continue
        if not op.label.split(" ", 1)[1].startswith("/api/v1/") or op.label.endswith(("/export", "/download-all")):
            continue

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        def run(case):
            response = case.call(base_url=server.url, timeout=60)
            case.validate_response(response, checks=[*CONFORMANCE, extra])

        try:
            run()
        except Unsatisfiable:
            continue
        except BaseException as exc:  # schemathesis raises a group of failures; keep going to list all
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures.append(f"{op.label}: {type(exc).__name__}: {str(exc)[:600]}")
    assert not failures, "\n".join(failures)
