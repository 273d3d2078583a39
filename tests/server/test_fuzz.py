"""Schemathesis against the real server on the embedded model, driven by the server's own OpenAPI document.

Every generated request (schema-valid and deliberately invalid) must get a documented status, content
type and body shape, never a 5xx, within the client timeout; the server must be serving afterwards.
"""

from __future__ import annotations

from typing import Iterator

import httpx
import pytest
import schemathesis
from hammer.server.settings import EMBEDDED_NAME
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from tests.conftest import running_server
from tests.server.tools_fixtures import TOOLS, user

pytestmark = pytest.mark.slow

SERVER_ARGS = ("--backend", "llama", "--n-ctx", "1024", "--request-timeout", "120")
MAX_TOKENS = 16


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    with running_server(*SERVER_ARGS, log_path=log) as url:
        yield url


@pytest.fixture
def api_schema(fuzzed_server: str):
    return schemathesis.openapi.from_url(f"{fuzzed_server}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_is_documented_and_never_5xx(case, fuzzed_server):
    if isinstance(case.body, dict):
        # Name the served model (else nearly every case stops at 404) and keep completions short.
        if isinstance(case.body.get("model"), str):
            case.body["model"] = EMBEDDED_NAME
        for limit in ("max_tokens", "max_output_tokens"):  # chat completions and messages, responses
            # Messages: max_tokens is required (its absence is a case to refuse) and count_tokens takes none.
            fill = case.body.get(limit) is None and not case.path.startswith("/v1/messages")
            if fill or (type(case.body.get(limit)) is int and case.body[limit] > MAX_TOKENS):
                case.body[limit] = MAX_TOKENS
    # positive_data_acceptance is left out: the schema cannot say that tool_choice needs tools or
    # that the prompt must fit the context, so schema-valid requests may rightly get a 400.
    response = case.call(base_url=fuzzed_server, timeout=150)
    case.validate_response(response, excluded_checks=[positive_data_acceptance])
    if response.status_code >= 400 and case.path.startswith("/v1/messages"):  # Anthropic's shape there
        body = response.json()
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"} and body["error"]["message"]
    elif response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]


def test_server_still_serves_after_fuzzing(fuzzed_server):
    assert httpx.get(f"{fuzzed_server}/health").json() == {"status": "ok"}
    body = {"model": EMBEDDED_NAME, "messages": user("What's the weather like in Paris?"), "tools": TOOLS,
            "temperature": 0}
    response = httpx.post(f"{fuzzed_server}/v1/chat/completions", json=body, timeout=300)
    assert response.status_code == 200, response.text
    calls = response.json()["choices"][0]["message"]["tool_calls"]
    assert calls and calls[0]["function"]["name"] == "get_weather", response.text
    metrics = httpx.get(f"{fuzzed_server}/metrics").text
    assert "hammer_running_generations 0.0" in metrics and "hammer_queue_depth 0.0" in metrics
    assert 'status="5' not in metrics, "a fuzzed request got a 5xx"
