"""Serving logic on a scripted backend: outcomes, stream/non-stream agreement, errors, admission."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.backends.base import Backend, Chunk, GenerationRequest
from server.backends.fake import FakeBackend
from server.settings import Settings
from tests.server.tools_fixtures import TOOLS, user

WEATHER_CALL = '```\n[{"name": "get_weather", "arguments": {"city": "Paris"}}]\n```'
TWO_CALLS = ('```\n[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
             '{"name": "get_weather", "arguments": {"city": "Rome"}}]\n```')
UNKNOWN_TOOL = '```\n[{"name": "launch_rocket", "arguments": {}}]\n```'
BAD_ARGS = '```\n[{"name": "get_weather", "arguments": {"city": 7}}, {"name": "get_weather", "arguments": {"city": "Rome"}}]\n```'


def make_client(replies: list[str], **settings: Any) -> tuple[TestClient, FakeBackend]:
    config = Settings(served_model_name="fake", **settings)
    backend = FakeBackend(config, replies=replies)
    return TestClient(create_app(config, backend)), backend


def chat(client: TestClient, **body: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": "fake", "messages": user("hi"), "tools": TOOLS, **body})


def stream_events(client: TestClient, **body: Any) -> list[dict]:
    response = chat(client, stream=True, **body)
    assert response.status_code == 200
    lines = [line for line in response.text.split("\n") if line]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


def reassemble(events: list[dict]) -> dict:
    message: dict[str, Any] = {"content": None, "tool_calls": []}
    finish = None
    for event in events:
        for choice in event["choices"]:
            delta = choice["delta"]
            if delta.get("content"):
                message["content"] = (message["content"] or "") + delta["content"]
            for tc in delta.get("tool_calls", []):
                if tc["index"] == len(message["tool_calls"]):
                    message["tool_calls"].append({"name": tc["function"]["name"], "arguments": ""})
                message["tool_calls"][tc["index"]]["arguments"] += tc["function"].get("arguments", "")
            if "invalid_tool_calls" in delta:
                message["invalid_tool_calls"] = delta["invalid_tool_calls"]
            finish = choice["finish_reason"] or finish
    return {"message": message, "finish": finish}


class TestOutcomes:
    @pytest.mark.parametrize("reply,finish,n_calls,n_invalid", [
        (WEATHER_CALL, "tool_calls", 1, 0),
        (TWO_CALLS, "tool_calls", 2, 0),
        ("```\n[]\n```", "stop", 0, 0),
        (UNKNOWN_TOOL, "stop", 0, 1),
        (BAD_ARGS, "tool_calls", 1, 1),
        ("I think you should call get_weather", "stop", 0, 1),
    ])
    def test_stream_and_non_stream_agree(self, reply, finish, n_calls, n_invalid):
        client, _ = make_client([reply])
        with client:
            plain = chat(client).json()
            streamed = reassemble(stream_events(client))
        choice = plain["choices"][0]
        assert choice["finish_reason"] == finish == streamed["finish"]
        calls = [(c["function"]["name"], c["function"]["arguments"]) for c in choice["message"].get("tool_calls") or []]
        assert len(calls) == n_calls
        assert calls == [(c["name"], c["arguments"]) for c in streamed["message"]["tool_calls"]]
        assert len(choice["message"].get("invalid_tool_calls") or []) == n_invalid
        assert choice["message"]["content"] == streamed["message"]["content"]

    def test_refusal_message(self):
        client, _ = make_client(["```\n[]\n```"], refusal_message="Nothing fits.")
        with client:
            message = chat(client).json()["choices"][0]["message"]
        assert message == {"role": "assistant", "content": "Nothing fits.", "tool_calls": None}

    def test_refusal_as_chat_runs_a_plain_chat_pass(self):
        client, backend = make_client(["```\n[]\n```", "Sure, here is a joke."], refusal="chat")
        with client:
            message = chat(client).json()["choices"][0]["message"]
        assert message["content"] == "Sure, here is a joke."
        assert backend.requests[0].constraint is not None and backend.requests[1].constraint is None
        assert "[BEGIN OF AVAILABLE TOOLS]" not in backend.requests[1].prompt

    def test_truncation_is_reported(self):
        client, _ = make_client([WEATHER_CALL])
        with client:
            choice = chat(client, max_tokens=20).json()["choices"][0]
        assert choice["finish_reason"] == "length"
        assert "max_tokens" in choice["message"]["invalid_tool_calls"][0]["error"]
        assert choice["message"].get("tool_calls") is None

    def test_invalid_arguments_are_explained(self):
        client, _ = make_client([UNKNOWN_TOOL])
        with client:
            message = chat(client).json()["choices"][0]["message"]
        assert "launch_rocket" in message["invalid_tool_calls"][0]["error"]
        assert message["content"].startswith("The model did not produce a valid tool call")

    def test_metrics_count_outcomes(self):
        client, _ = make_client([WEATHER_CALL, "```\n[]\n```", UNKNOWN_TOOL])
        with client:
            for _ in range(3):
                chat(client)
            metrics = client.get("/metrics").text
        for outcome in ("calls", "refusal", "invalid"):
            assert f'hammer_tool_call_outcomes_total{{outcome="{outcome}"}} 1.0' in metrics
        assert "hammer_tool_calls_returned_total 1.0" in metrics


class TestRequestConversion:
    def test_tool_requests_get_the_hammer_prompt_and_a_constraint(self):
        client, backend = make_client([WEATHER_CALL])
        with client:
            chat(client, parallel_tool_calls=False, tool_choice="required")
        request = backend.requests[0]
        assert request.prompt.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
        schema = request.constraint.json_schema
        assert (schema["minItems"], schema["maxItems"]) == (1, 1)
        assert request.constraint.prefix == "```\n" and request.constraint.suffix == "\n```"

    def test_tool_choice_none_uses_the_chat_template(self):
        client, backend = make_client(["Hello"])
        with client:
            message = chat(client, tool_choice="none").json()["choices"][0]["message"]
        assert message["content"] == "Hello" and backend.requests[0].constraint is None
        assert "[BEGIN OF AVAILABLE TOOLS]" not in backend.requests[0].prompt

    def test_content_parts_are_joined(self):
        client, backend = make_client(["ok"])
        with client:
            client.post("/v1/chat/completions", json={"model": "fake", "messages": [
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]})
        assert "ab" in backend.requests[0].prompt

    def test_bad_history_arguments(self):
        client, _ = make_client(["ok"])
        messages = [*user("x"), {"role": "assistant", "tool_calls": [
            {"id": "1", "type": "function", "function": {"name": "get_weather", "arguments": "{not json"}}]}]
        with client:
            response = chat(client, messages=messages)
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "messages[1].tool_calls[0].function.arguments"

    def test_response_format_with_tools_is_rejected(self):
        client, _ = make_client(["ok"])
        with client:
            response = chat(client, response_format={"type": "json_object"})
        assert response.status_code == 400 and response.json()["error"]["param"] == "response_format"


class FailingBackend(FakeBackend):
    async def generate(self, request: GenerationRequest):
        raise RuntimeError("engine exploded")
        yield Chunk("")  # pragma: no cover - makes this an async generator


class TestErrors:
    def test_unexpected_backend_error_is_500_in_openai_shape(self):
        config = Settings(served_model_name="fake")
        with TestClient(create_app(config, FailingBackend(config)), raise_server_exceptions=False) as client:
            response = chat(client)
            assert response.status_code == 500
            assert response.json()["error"]["type"] == "server_error"
            events = stream_events(client)
        assert "error" in events[-1]

    def test_unknown_route_and_method(self):
        client, _ = make_client(["ok"])
        with client:
            assert client.get("/v2/nothing").json()["error"]["type"] == "not_found_error"
            assert client.get("/v1/chat/completions").status_code == 405


class TestAdmission:
    def test_full_queue_answers_429_with_retry_after(self):
        config = Settings(served_model_name="fake", max_queue=0)
        backend: Backend = FakeBackend(config, replies=["slow reply"], delay=0.05)
        app = create_app(config, backend)

        async def main() -> list[httpx.Response]:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                    body = {"model": "fake", "messages": user("hi")}
                    first = asyncio.create_task(client.post("/v1/chat/completions", json=body))
                    await asyncio.sleep(0.1)
                    second = await client.post("/v1/chat/completions", json=body)
                    return [await first, second]

        first, second = asyncio.run(main())
        assert first.status_code == 200 and first.json()["choices"][0]["message"]["content"] == "slow reply"
        assert second.status_code == 429 and second.headers["retry-after"] == "1"
        assert second.json()["error"]["code"] == "queue_full"
