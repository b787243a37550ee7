"""schemathesis against the server's own OpenAPI schema (/openapi.json), on a live server over
SmolLM2: requests generated from the schema, valid and invalid, a bounded number per route. No
answer may be a 5xx; every answer's status, content type and body must be the ones the schema
documents; a request that breaks the schema must be refused."""

import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi) is not installed")
schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")
pytest.importorskip("uvicorn")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

import test_server  # noqa: E402  (its live-server fixture body)
from edgellama import Llama  # noqa: E402
from edgellama.server.app import ServerConfig  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]
EXAMPLES_PER_ROUTE = 25


@pytest.fixture(scope="module")
def api_schema(smollm2_path):
    # A small window bounds each generated request's work: max_tokens is unbounded in the schema
    # and generation stops at the window. The timeout bounds the rest (n up to 16 choices).
    llm = Llama(smollm2_path, n_ctx=96, n_threads=2, n_parallel=2)
    for url in test_server.serving(llm, ServerConfig("smollm2", max_queue=64, timeout=20)):
        yield schemathesis.openapi.from_url(url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_ROUTE, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_every_answer_matches_the_schema_and_none_is_a_server_error(case):
    case.call_and_validate(checks=CHECKS, timeout=60)
