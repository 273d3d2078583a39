"""Property tests of request validation (hypothesis) on a scripted backend.

Whatever the body, the answer is a 200 or a 4xx in OpenAI's error shape, never a 422 or a 5xx;
and whatever the model writes, a returned tool call is valid against its tool's schema.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from hammer.server.app import create_app
from hammer.server.backends.fake import FakeBackend
from hammer.server.protocol import ChatCompletionResponse
from hammer.server.settings import Settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.tools_fixtures import TOOLS, user

SCALARS = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=20)
VALID = {"model": "fake", "messages": user("What's the weather in Paris?"), "tools": TOOLS}
KEYS = ["model", "messages", "tools", "tool_choice", "parallel_tool_calls", "stream", "stream_options",
        "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stop", "seed", "response_format"]
CALL = '```\n[{"name": "get_weather", "arguments": {"city": "Paris"}}]\n```'
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def app() -> tuple[TestClient, FakeBackend]:
    config = Settings(served_model_name="fake", max_tools=8, max_schema_depth=6, max_messages=16, n_ctx=4096)
    backend = FakeBackend(config, replies=[CALL])
    with TestClient(create_app(config, backend), raise_server_exceptions=False) as client:
        yield client, backend


def post(client: TestClient, body: Any) -> Any:
    return client.post("/v1/chat/completions", content=json.dumps(body), headers={"content-type": "application/json"})


def assert_openai_answer(response: Any) -> dict:
    """A 200 chat completion (or SSE stream), or a 4xx with the OpenAI error body; nothing else."""
    assert response.status_code in (200, 400, 404), (response.status_code, response.text)
    if response.status_code == 200:
        if response.headers["content-type"].startswith("text/event-stream"):
            assert response.text.endswith("data: [DONE]\n\n") and '"error"' not in response.text
            return {}
        return ChatCompletionResponse.model_validate(response.json()).model_dump()
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["type"] == "invalid_request_error"
    return {}


NAMES = st.sampled_from(["a", "b", "c"])  # few names: arguments the model writes often hit declared properties


def schemas(depth: int = 3) -> st.SearchStrategy[Any]:
    """Schemas, valid and not: types, enums, nesting, and (rarely) junk values where keywords go."""
    leaf = st.sampled_from([{"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"},
                            {"type": "string", "enum": ["a", "b"]}, {"type": "string", "maxLength": 3},
                            {"type": "integer", "minimum": 0, "maximum": 9}, {}, {"type": "null"}])
    junk = st.fixed_dictionaries({"type": JSON}) | st.fixed_dictionaries({"enum": JSON})
    return st.recursive(st.one_of(leaf, leaf, leaf, junk), lambda inner: objects(inner)
                        | st.builds(lambda items: {"type": "array", "items": items}, inner), max_leaves=depth * 3)


def objects(properties: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(lambda props, req: {"type": "object", "properties": props, "required": req},
                     st.dictionaries(NAMES, properties, max_size=3), st.lists(NAMES, max_size=2, unique=True))


# What a model writes as arguments: anything at all, or objects over the declared names.
ARGUMENTS = JSON | st.dictionaries(NAMES, SCALARS | st.sampled_from(["a", "b", 3]), max_size=3)


class TestAnyBody:
    @SETTINGS
    @given(body=JSON)
    def test_any_json_is_answered_in_openai_shape(self, app, body):
        assert_openai_answer(post(app[0], body))

    @SETTINGS
    @given(key=st.sampled_from(KEYS), value=JSON)
    def test_one_field_replaced_by_anything(self, app, key, value):
        assert_openai_answer(post(app[0], {**VALID, key: value}))

    @SETTINGS
    @given(key=st.sampled_from(["model", "messages"]))
    def test_a_required_field_missing_names_it(self, app, key):
        response = post(app[0], {k: v for k, v in VALID.items() if k != key})
        assert response.status_code == 400 and response.json()["error"]["param"] == key

    @SETTINGS
    @given(raw=st.binary(max_size=64))
    def test_bytes_that_are_not_json(self, app, raw):
        response = app[0].post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
        assert_openai_answer(response)


class TestMessages:
    message = st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant", "tool", "developer", "wizard"])},
        optional={"content": st.none() | st.text(max_size=30) | st.lists(
            st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]), "text": st.text(max_size=10)}),
            max_size=2),
            "tool_call_id": st.text(max_size=8), "name": st.text(max_size=8),
            "tool_calls": st.lists(st.fixed_dictionaries({
                "id": st.text(max_size=8), "type": st.just("function"),
                "function": st.fixed_dictionaries({"name": st.sampled_from(["get_weather", "x y"]),
                                                   "arguments": st.text(max_size=20) | st.just('{"city": "Rome"}')})}),
                max_size=2)})

    @SETTINGS
    @given(messages=st.lists(message, max_size=20))
    def test_any_conversation_is_answered_in_openai_shape(self, app, messages):
        response = post(app[0], {**VALID, "messages": messages})
        assert_openai_answer(response)
        if len(messages) > 16 or not messages:
            assert response.status_code == 400 and response.json()["error"]["param"].startswith("messages")


class TestTools:
    @SETTINGS
    @given(parameters=objects(schemas()), arguments=ARGUMENTS,
           choice=st.sampled_from(["auto", "required", "none", None]))
    def test_returned_calls_always_match_the_declared_schema(self, app, parameters, arguments, choice):
        client, backend = app
        tool = {"type": "function", "function": {"name": "f", "description": "d", "parameters": parameters}}
        backend.replies = [f'```\n[{{"name": "f", "arguments": {json.dumps(arguments)}}}]\n```']
        body = {**VALID, "tools": [tool], **({"tool_choice": choice} if choice else {})}
        response = post(client, body)
        completion = assert_openai_answer(response)
        if response.status_code == 400:
            assert response.json()["error"]["param"].startswith(("tools[0].function", "tool_choice"))
            return
        message = completion["choices"][0]["message"]
        for call in message["tool_calls"] or []:
            jsonschema.validate(json.loads(call["function"]["arguments"]), parameters)
        if not message["tool_calls"] and choice != "none":
            assert message["content"], "an unusable call is explained, not dropped"

    @SETTINGS
    @given(arguments=st.dictionaries(NAMES, st.text(max_size=20) | st.integers(-10**6, 10**6) | st.booleans(),
                                     max_size=3))
    def test_a_valid_call_is_returned_as_written(self, app, arguments):
        # The test above checks every call it gets back, and may get none: here each call is valid, so
        # it must come back, with the arguments the model wrote.
        client, backend = app
        parameters = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"},
                                                       "c": {}}}
        arguments = {k: v for k, v in arguments.items() if k != "a" or isinstance(v, str)}
        arguments = {k: v for k, v in arguments.items() if k != "b" or type(v) is int}
        tool = {"type": "function", "function": {"name": "f", "description": "d", "parameters": parameters}}
        backend.replies = [f'```\n[{{"name": "f", "arguments": {json.dumps(arguments)}}}]\n```']
        message = assert_openai_answer(post(client, {**VALID, "tools": [tool]}))["choices"][0]["message"]
        (call,) = message["tool_calls"]
        assert call["function"]["name"] == "f" and json.loads(call["function"]["arguments"]) == arguments

    @SETTINGS
    @given(n=st.integers(0, 12), depth=st.integers(1, 10))
    def test_tool_count_and_schema_depth_limits(self, app, n, depth):
        nested: dict[str, Any] = {"type": "string"}
        for _ in range(depth):
            nested = {"type": "object", "properties": {"x": nested}}
        tools = [{"type": "function", "function": {"name": f"f{i}", "parameters": nested}} for i in range(n)]
        response = post(app[0], {**VALID, "tools": tools})
        assert_openai_answer(response)
        if n > 8:
            assert response.status_code == 400 and response.json()["error"]["param"] == "tools"
        elif n and depth > 6:  # depth counts subschemas: the string sits `depth` levels below the root
            assert response.status_code == 400
            assert response.json()["error"]["param"] == "tools[0].function.parameters"
        else:
            assert response.status_code == 200
