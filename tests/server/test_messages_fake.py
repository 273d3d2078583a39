"""The Messages API on a scripted backend: conversion, events, errors, auth, through the anthropic SDK."""

from __future__ import annotations

import doctest
import json
from typing import Any

import anthropic
import httpx
import pytest
from fastapi.testclient import TestClient
from hammer.server.app import create_app
from hammer.server.backends.fake import FakeBackend
from hammer.server.messages import build, convert, errors, protocol
from hammer.server.settings import Settings

WEATHER = {"name": "get_weather", "description": "Get the current weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
EMAIL = {"name": "send_email", "description": "Send an email",
         "input_schema": {"type": "object", "properties": {"to": {"type": "string"}}, "required": ["to"]}}
WEATHER_CALL = '```\n[{"name": "get_weather", "arguments": {"city": "Paris"}}]\n```'
BAD_ARGS = '```\n[{"name": "get_weather", "arguments": {"city": 7}}]\n```'
REFUSAL = "```\n[]\n```"
QUESTION = [{"role": "user", "content": "Weather in Paris?"}]


def make_client(replies: list[str], delay: float = 0.0, **settings: Any) -> tuple[TestClient, FakeBackend]:
    config = Settings(served_model_name="fake", **settings)
    backend = FakeBackend(config, replies=replies, delay=delay)
    return TestClient(create_app(config, backend)), backend


def sdk(client: TestClient, key: str = "unused") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url="http://testserver", api_key=key, max_retries=0, http_client=client)


def create(client: TestClient, **kwargs: Any):
    kwargs.setdefault("model", "fake")
    kwargs.setdefault("max_tokens", 200)
    kwargs.setdefault("messages", QUESTION)
    return sdk(client).messages.create(**kwargs)


def post(client: TestClient, path: str = "/v1/messages", **body: Any) -> httpx.Response:
    body = {"model": "fake", "max_tokens": 200, "messages": QUESTION, **body}
    # json.dumps escapes non-ASCII, so a lone surrogate can be sent as the JSON escape it is.
    return client.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})


def events_of(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in response.text.strip().split("\n\n"):
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: ")
        event = json.loads(data[6:])
        assert event["type"] == name[7:]
        events.append(event)
    return events


def assert_anthropic_error(response: httpx.Response, status: int, kind: str, *named: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and set(body) == {"type", "error"}, body
    assert set(body["error"]) == {"type", "message"} and body["error"]["type"] == kind, body
    message = body["error"]["message"]
    for text in named:
        assert text in message, f"{text!r} not in {message!r}"
    return message


def test_doctests():
    for module in (build, convert, errors, protocol):
        assert doctest.testmod(module).failed == 0, module.__name__


class TestCreate:
    def test_tool_use_through_the_sdk(self):
        client, _ = make_client([WEATHER_CALL])
        with client:
            message = create(client, tools=[WEATHER])
        assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
        (block,) = message.content
        assert block.type == "tool_use" and block.name == "get_weather" and block.input == {"city": "Paris"}
        assert block.id.startswith("toolu_") and message.stop_reason == "tool_use" and message.stop_sequence is None
        assert message.model == "fake" and message.usage.input_tokens > 0 and message.usage.output_tokens == len(
            WEATHER_CALL)

    def test_tool_result_round_trip_reaches_the_answer_pass(self):
        client, backend = make_client([WEATHER_CALL, REFUSAL, "It is 17 degrees."])
        with client:
            first = create(client, tools=[WEATHER])
            answer = create(client, tools=[WEATHER], messages=[
                *QUESTION, {"role": "assistant", "content": first.content},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first.content[0].id,
                                              "content": [{"type": "text", "text": "17 degrees"}]}]}])
        assert [b.type for b in answer.content] == ["text"] and answer.content[0].text == "It is 17 degrees."
        assert answer.stop_reason == "end_turn"
        # The tool pass saw the call and its result; the answer pass (plain chat) too.
        tool_prompt, answer_prompt = backend.requests[1].prompt, backend.requests[2].prompt
        assert '"get_weather"' in tool_prompt and "17 degrees" in tool_prompt
        assert "get_weather" in answer_prompt and "17 degrees" in answer_prompt
        assert answer.usage.input_tokens > first.usage.input_tokens  # both passes' prompts

    def test_failed_tool_result_reads_as_an_error(self):
        client, backend = make_client([REFUSAL, "Sorry."])
        with client:
            create(client, tools=[WEATHER], messages=[
                *QUESTION, {"role": "assistant", "content": [
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                              "content": "no such city", "is_error": True}]}])
        assert "Error: no such city" in backend.requests[0].prompt
        assert "Let me look." in backend.requests[1].prompt  # the answer pass: the Hammer format writes calls only

    def test_refusal_is_a_text_block(self):
        client, _ = make_client([REFUSAL])
        with client:
            message = create(client, tools=[WEATHER])
        (block,) = message.content
        assert block.type == "text" and block.text == Settings().refusal_message and message.stop_reason == "end_turn"

    def test_invalid_call_is_never_a_tool_use_block(self):
        client, _ = make_client([BAD_ARGS])
        with client:
            message = create(client, tools=[WEATHER])
        assert [b.type for b in message.content] == ["text"], message
        assert "did not produce a valid tool call" in message.content[0].text
        (invalid,) = message.model_dump()["invalid_tool_calls"]
        assert invalid["name"] == "get_weather" and "schema" in invalid["error"]

    def test_max_tokens_stop_reason(self):
        client, _ = make_client(["A long story about a dragon."])
        with client:
            message = create(client, max_tokens=5)
        assert message.stop_reason == "max_tokens" and message.content[0].text == "A lon"
        assert message.usage.output_tokens == 5

    def test_max_tokens_past_the_context_stops_at_its_end(self):
        client, backend = make_client(["x" * 400], n_ctx=256)
        with client:
            message = create(client, max_tokens=4096)  # LangChain's default; Claude Code streams with 32000
        room = 256 - message.usage.input_tokens
        assert backend.requests[0].params.max_tokens == room and message.usage.output_tokens == room
        assert message.stop_reason == "model_context_window_exceeded"

    def test_sampling_stop_sequences_and_system_reach_the_backend(self):
        client, backend = make_client(["Hi"])
        with client:
            create(client, system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
                   stop_sequences=["END"], metadata={"user_id": "u1"},
                   # No longer arguments of the SDK (newer Claude models fix them): sent in the body.
                   extra_body={"temperature": 0, "top_p": 0.5})
        (request,) = backend.requests
        assert request.params.temperature == 0 and request.params.top_p == 0.5 and request.params.stop == ("END",)
        assert "Be brief." in request.prompt and request.params.max_tokens == 200


    def test_output_config_format_constrains_the_text(self):
        schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        client, backend = make_client(['{"city": "Paris"}'])
        with client:
            message = create(client, output_config={"format": {"type": "json_schema", "schema": schema}},
                             cache_control={"type": "ephemeral"})
        assert json.loads(message.content[0].text) == {"city": "Paris"} and message.stop_reason == "end_turn"
        (request,) = backend.requests
        assert request.constraint is not None and '"city"' in json.dumps(request.constraint.json_schema)


class TestToolChoice:
    def schema(self, backend: FakeBackend) -> str:
        constraint = backend.requests[-1].constraint
        return json.dumps(constraint.json_schema) if constraint else ""

    def test_none_gives_a_plain_chat_prompt(self):
        client, backend = make_client(["Hello"])
        with client:
            message = create(client, tools=[WEATHER], tool_choice={"type": "none"})
        assert message.content[0].text == "Hello" and backend.requests[0].constraint is None
        assert "get_weather" not in backend.requests[0].prompt

    def test_named_tool_is_the_only_one_decodable(self):
        client, backend = make_client(['```\n[{"name": "send_email", "arguments": {"to": "a@b.c"}}]\n```'])
        with client:
            message = create(client, tools=[WEATHER, EMAIL], tool_choice={"type": "tool", "name": "send_email"})
        assert message.content[0].name == "send_email" and message.stop_reason == "tool_use"
        assert "send_email" in self.schema(backend) and "get_weather" not in self.schema(backend)

    def test_any_and_disable_parallel_tool_use(self):
        client, backend = make_client([WEATHER_CALL])
        with client:
            create(client, tools=[WEATHER], tool_choice={"type": "any", "disable_parallel_tool_use": True})
            parallel = self.schema(backend)
            create(client, tools=[WEATHER], tool_choice={"type": "any"})
        assert '"maxItems": 1' in parallel and '"maxItems": 1' not in self.schema(backend)
        assert '"minItems": 1' in parallel

    def test_unknown_named_tool_names_tool_choice(self):
        client, _ = make_client([WEATHER_CALL])
        with client:
            response = post(client, tools=[WEATHER], tool_choice={"type": "tool", "name": "nope"})
        assert_anthropic_error(response, 400, "invalid_request_error", "tool_choice")


class TestStream:
    def test_events_in_order(self):
        client, _ = make_client(["Hi there"])
        with client:
            events = events_of(post(client, stream=True))
        kinds = [e["type"] for e in events]
        assert kinds[:4] == ["message_start", "ping", "content_block_start", "content_block_delta"]
        assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
        start = events[0]["message"]
        assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["input_tokens"] > 0
        assert "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta") == "Hi there"
        assert events[-2]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
        assert events[-2]["usage"]["output_tokens"] == len("Hi there")

    def test_tool_use_events(self):
        client, _ = make_client([WEATHER_CALL])
        with client:
            events = events_of(post(client, stream=True, tools=[WEATHER]))
        start, delta, stop = [e for e in events if e["type"].startswith("content_block")]
        assert start["content_block"]["type"] == "tool_use" and start["content_block"]["input"] == {}
        assert start["content_block"]["id"].startswith("toolu_") and start["index"] == delta["index"] == 0
        assert json.loads(delta["delta"]["partial_json"]) == {"city": "Paris"} and stop["index"] == 0
        assert events[-2]["delta"]["stop_reason"] == "tool_use"

    @pytest.mark.parametrize("replies, after_tool_result", [([WEATHER_CALL], False),
                                                            ([REFUSAL, "It is 17 degrees."], True)])
    def test_sdk_stream_accumulates_the_created_message(self, replies, after_tool_result):
        client, _ = make_client(replies)
        messages = QUESTION
        if after_tool_result:
            messages = [*QUESTION, {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "17"}]}]
        request = {"model": "fake", "max_tokens": 200, "messages": messages, "tools": [WEATHER]}
        with client:
            created = sdk(client).messages.create(**request)
            with sdk(client).messages.stream(**request) as stream:
                streamed = stream.get_final_message()

        def shape(message) -> dict[str, Any]:
            data = message.model_dump(exclude={"id"})
            for block in data["content"]:
                block.pop("id", None)
                block.pop("parsed_output", None)
            return data

        assert shape(streamed) == shape(created)

    def test_a_full_queue_answers_429_before_the_stream_starts(self):
        client, _ = make_client(["A slow answer"], delay=0.05, max_queue=0)
        body = {"model": "fake", "max_tokens": 50, "messages": QUESTION, "stream": True}
        with client, client.stream("POST", "/v1/messages", json=body) as running:
            assert next(running.iter_lines()) == "event: message_start"
            refused = post(client, stream=True)
        assert_anthropic_error(refused, 429, "rate_limit_error", "busy")
        assert refused.headers["retry-after"]

    def test_error_after_the_start_is_an_error_event(self):
        client, _ = make_client(["A slow answer"], delay=0.2, request_timeout=0.3)
        with client:
            events = events_of(post(client, stream=True))
        assert events[0]["type"] == "message_start" and events[-1]["type"] == "error"
        assert events[-1]["error"]["type"] == "timeout_error" and "message_stop" not in [e["type"] for e in events]


class TestCountTokens:
    def test_counts_the_prompt_of_the_same_request(self):
        client, _ = make_client([WEATHER_CALL])
        with client:
            counted = sdk(client).messages.count_tokens(model="fake", messages=QUESTION, tools=[WEATHER])
            created = create(client, tools=[WEATHER])
            plain = sdk(client).messages.count_tokens(model="fake", messages=QUESTION)
        assert counted.input_tokens == created.usage.input_tokens > plain.input_tokens > 0

    def test_errors_in_anthropic_shape(self):
        client, _ = make_client(["x"])
        with client:
            response = client.post("/v1/messages/count_tokens", json={
                "model": "fake", "messages": [{"role": "user", "content": [{"type": "document"}]}]})
        assert_anthropic_error(response, 400, "invalid_request_error", "messages[0].content[0]", "'document'")


SURROGATE = "a\ud800"


class TestErrors:
    @pytest.mark.parametrize("body, named", [
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
         ("messages[0].content[0]", "'image'")),
        ({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [
            {"type": "document"}]}]}]}, ("messages[0].content[0].content[0]", "'document'")),
        ({"messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": "hm"}]},
                       *QUESTION]}, ("messages[0].content[0]", "'thinking'")),
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, ("thinking",)),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, ("tools[0].type", "web_search")),
        ({"top_k": 5}, ("top_k",)),
        ({"output_config": {"effort": "high"}}, ("output_config.effort",)),
        ({"output_config": {"format": {"type": "json_schema", "schema": {
            "type": "object", "properties": {"a": {"not": {}}}}}}}, ("output_config.format",)),
        ({"mcp_servers": []}, ("mcp_servers",)),
        ({"max_tokens": None}, ("max_tokens",)),
        ({"max_tokens": 0}, ("max_tokens",)),
        ({"temperature": 1.5}, ("temperature",)),
        ({"stop_sequences": ["a", "b", "c", "d", "e"]}, ("stop_sequences",)),
        ({"messages": [*QUESTION, {"role": "assistant", "content": "It is"}]}, ("messages[1]", "prefill")),
        ({"messages": [{"role": "system", "content": "x"}]}, ("messages[0]", "role")),
        ({"tools": [{**WEATHER, "input_schema": {"type": "object", "properties": {"a": {"not": {}}}}}]},
         ("tools[0].input_schema",)),
        ({"tools": [WEATHER, WEATHER]}, ("tools[1].name",)),
        ({"tool_choice": {"type": "any"}}, ("tool_choice",)),
        ({"messages": [{"role": "user", "content": SURROGATE}]}, ("messages[0].content",)),
        ({"messages": [*QUESTION, {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t", "name": "get_weather", "input": {"city": SURROGATE}}]}, *QUESTION]},
         ("messages[1].content[0].input.city",)),
    ])
    def test_bad_request_names_the_field(self, body, named):
        client, _ = make_client(["x"])
        with client:
            assert_anthropic_error(post(client, **body), 400, "invalid_request_error", *named)

    def test_sdk_raises_its_bad_request_error(self):
        client, _ = make_client(["x"])
        with client, pytest.raises(anthropic.BadRequestError) as raised:
            create(client, messages=[{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]}])
        assert raised.value.body["error"]["type"] == "invalid_request_error"
        assert "'image' blocks are not supported" in raised.value.body["error"]["message"]

    def test_invalid_json_unknown_model_and_method(self):
        client, _ = make_client(["x"])
        with client:
            bad = client.post("/v1/messages", content=b"{", headers={"Content-Type": "application/json"})
            unknown = post(client, model="claude-sonnet-4-5")
            method = client.get("/v1/messages")
            chat = client.post("/v1/chat/completions", json={"model": "nope", "messages": QUESTION})
        assert_anthropic_error(bad, 400, "invalid_request_error", "JSON")
        assert_anthropic_error(unknown, 404, "not_found_error", "model", "claude-sonnet-4-5")
        assert_anthropic_error(method, 405, "invalid_request_error")
        assert method.headers["allow"] == "POST"
        # Only the Messages paths answer in Anthropic's shape.
        assert chat.status_code == 404 and chat.json()["error"]["param"] == "model"


class TestAuth:
    def test_x_api_key_and_bearer(self):
        client, _ = make_client(["Hi"], api_key=["k1", "k2"])
        with client:
            assert sdk(client, key="k2").messages.create(model="fake", max_tokens=5, messages=QUESTION).content
            bearer = client.post("/v1/messages", json={"model": "fake", "max_tokens": 5, "messages": QUESTION},
                                 headers={"Authorization": "Bearer k1"})
            with pytest.raises(anthropic.AuthenticationError) as raised:
                sdk(client, key="wrong").messages.create(model="fake", max_tokens=5, messages=QUESTION)
            missing = client.post("/v1/messages/count_tokens", json={"model": "fake", "messages": QUESTION})
            chat = client.post("/v1/chat/completions", json={"model": "fake", "messages": QUESTION})
        assert bearer.status_code == 200
        assert raised.value.body["error"]["type"] == "authentication_error"
        assert_anthropic_error(missing, 401, "authentication_error", "x-api-key")
        assert chat.status_code == 401 and chat.json()["error"]["code"] == "invalid_api_key"


def test_metrics_and_openapi():
    client, _ = make_client(["Hi"])
    with client:
        create(client)
        post(client, messages=[])
        metrics = client.get("/metrics").text
        paths = client.get("/openapi.json").json()["paths"]
    assert 'route="/v1/messages",status="200"' in metrics and 'route="/v1/messages",status="400"' in metrics
    create_doc, count_doc = paths["/v1/messages"]["post"]["responses"], paths["/v1/messages/count_tokens"]["post"]
    assert "text/event-stream" in create_doc["200"]["content"] and "422" not in create_doc
    error_schema = create_doc["400"]["content"]["application/json"]["schema"]["$ref"]
    assert error_schema.endswith("/AnthropicError") and "422" not in count_doc["responses"]
