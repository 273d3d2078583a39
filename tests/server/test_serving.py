"""Serving logic on a scripted backend: outcomes, stream/non-stream agreement, errors, admission."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import chat_stream  # loadtest/, on the path by pytest's pythonpath (pyproject.toml)
import httpx
import pytest
from chat_stream import Stream, parse_sse
from fastapi.testclient import TestClient
from hammer.server.app import create_app
from hammer.server.backends.base import Backend, Chunk, GenerationRequest
from hammer.server.backends.fake import FakeBackend
from hammer.server.settings import Settings

from tests.server.tools_fixtures import TOOLS, user

WEATHER_CALL = '```\n[{"name": "get_weather", "arguments": {"city": "Paris"}}]\n```'
TWO_CALLS = ('```\n[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
             '{"name": "get_weather", "arguments": {"city": "Rome"}}]\n```')
UNKNOWN_TOOL = '```\n[{"name": "launch_rocket", "arguments": {}}]\n```'
BAD_ARGS = ('```\n[{"name": "get_weather", "arguments": {"city": 7}}, '
            '{"name": "get_weather", "arguments": {"city": "Rome"}}]\n```')


def make_client(replies: list[str], **settings: Any) -> tuple[TestClient, FakeBackend]:
    config = Settings(served_model_name="fake", **settings)
    backend = FakeBackend(config, replies=replies)
    return TestClient(create_app(config, backend)), backend


def chat(client: TestClient, **body: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": "fake", "messages": user("hi"), "tools": TOOLS, **body})


def stream_events(client: TestClient, **body: Any) -> list[dict]:
    response = chat(client, stream=True, **body)
    assert response.status_code == 200
    events, done = parse_sse(response.text)
    assert done, "the stream ends with data: [DONE]"
    return events


def reassemble(events: list[dict]) -> Stream:
    stream = chat_stream.reassemble(events)
    assert not stream.problems, stream.problems
    return stream


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
        assert choice["finish_reason"] == finish == streamed.finish_reason
        calls = [(c["function"]["name"], c["function"]["arguments"]) for c in choice["message"].get("tool_calls") or []]
        assert len(calls) == n_calls
        assert calls == [(c["name"], c["arguments"]) for c in streamed.tool_calls]
        assert len(choice["message"].get("invalid_tool_calls") or []) == n_invalid
        assert (streamed.invalid_tool_calls or []) == (choice["message"].get("invalid_tool_calls") or [])
        assert choice["message"]["content"] == streamed.content

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

    def test_refusal_as_chat_counts_each_prompt_once(self):
        """usage is a value: both passes' prompts in the client's usage, and the same sum in /metrics."""
        client, backend = make_client(["```\n[]\n```", "Sure, here is a joke."], refusal="chat")
        with client:
            usage = chat(client).json()["usage"]
            metrics = client.get("/metrics").text
        both = sum(backend.count_tokens(r.prompt) for r in backend.requests)
        assert usage["prompt_tokens"] == both
        assert f"hammer_prompt_tokens_total {float(both)}" in metrics
        assert f"hammer_completion_tokens_total {float(usage['completion_tokens'])}" in metrics

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

    def test_first_token_and_first_call_are_timed_apart(self):
        """Every request times its first engine token once (the answer turn's second pass is not a
        first token); only a returned call times the first call."""
        client, backend = make_client([WEATHER_CALL, "```\n[]\n```", "plain text", "```\n[]\n```", "17 degrees."])
        with client:
            chat(client)
            chat(client)
            client.post("/v1/chat/completions", json={"model": "fake", "messages": user("hi")})
            chat(client, messages=AFTER_RESULT)
            metrics = client.get("/metrics").text
        assert len(backend.requests) == 5
        assert "hammer_time_to_first_token_seconds_count 4.0" in metrics
        assert "hammer_time_to_first_call_seconds_count 1.0" in metrics


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

    # response_format with tools: tests/server/test_structured_tools.py (issue 23).


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

    def test_a_route_without_v1_names_the_route_meant(self):
        # An SDK whose base_url lacks /v1 posts to /chat/completions.
        client, _ = make_client(["ok"])
        with client:
            response = client.post("/chat/completions", json={})
        assert response.status_code == 404
        assert "did you mean /v1/chat/completions?" in response.json()["error"]["message"]

    def test_a_body_sent_as_a_form_says_to_send_json(self):
        # curl -d without -H 'Content-Type: application/json' sends a form.
        client, _ = make_client(["ok"])
        with client:
            response = client.post("/v1/chat/completions", content=b'{"model": "fake"}',
                                   headers={"content-type": "application/x-www-form-urlencoded"})
        error = response.json()["error"]
        assert response.status_code == 400 and error["code"] == "invalid_content_type"
        assert "-H 'Content-Type: application/json'" in error["message"]


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

    def test_streams_past_the_queue_get_429_before_the_stream(self):
        config = Settings(served_model_name="fake", max_queue=2)
        app = create_app(config, FakeBackend(config, replies=["slow reply"], delay=0.02))

        async def main() -> list[httpx.Response]:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                    body = {"model": "fake", "messages": user("hi"), "stream": True}
                    return await asyncio.gather(*(client.post("/v1/chat/completions", json=body)
                                                  for _ in range(8)))

        responses = asyncio.run(main())
        statuses = sorted(r.status_code for r in responses)
        assert statuses.count(200) >= 1 and statuses.count(429) >= 1 and set(statuses) == {200, 429}
        for response in responses:
            if response.status_code == 200:
                assert "error" not in response.text and response.text.endswith("data: [DONE]\n\n")


AFTER_RESULT = [*user("What's the weather in Paris?"),
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
                    "name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "It is 17 degrees in Paris."}]


class TestAgentLoop:
    def test_empty_list_after_tool_results_runs_the_answer_turn(self):
        client, backend = make_client(["```\n[]\n```", "It is 17 degrees."])
        with client:
            response = chat(client, messages=AFTER_RESULT).json()
        choice = response["choices"][0]
        assert choice == {**choice, "finish_reason": "stop", "message": {
            "role": "assistant", "content": "It is 17 degrees.", "tool_calls": None}}
        first, second = backend.requests
        assert second.constraint is None and "[BEGIN OF AVAILABLE TOOLS]" not in second.prompt
        assert "It is 17 degrees in Paris." in second.prompt and 'get_weather({"city": "Paris"})' in second.prompt
        # usage counts both passes
        both = backend.count_tokens(first.prompt) + backend.count_tokens(second.prompt)
        assert response["usage"]["prompt_tokens"] == both
        assert response["usage"]["completion_tokens"] == len("```\n[]\n```") + len("It is 17 degrees.")

    def test_answer_turn_streams_as_content_deltas(self):
        client, _ = make_client(["```\n[]\n```", "It is 17 degrees."])
        with client:
            events = stream_events(client, messages=AFTER_RESULT, stream_options={"include_usage": True})
        streamed = reassemble(events)
        assert streamed.content == "It is 17 degrees." and streamed.finish_reason == "stop"
        assert sum(1 for e in events if e["choices"] and e["choices"][0]["delta"].get("content")) > 1
        assert events[-1]["usage"]["completion_tokens"] == len("```\n[]\n```") + len("It is 17 degrees.")

    def test_a_repeated_answered_call_is_dropped_and_the_model_answers(self):
        client, backend = make_client([WEATHER_CALL, "17 degrees."])
        with client:
            message = chat(client, messages=AFTER_RESULT).json()["choices"][0]["message"]
            metrics = client.get("/metrics").text
        assert message["tool_calls"] is None and message["content"] == "17 degrees."
        assert len(backend.requests) == 2
        assert 'hammer_duplicate_calls_dropped_total{reason="repeated"} 1.0' in metrics
        assert 'hammer_tool_call_outcomes_total{outcome="answer"} 1.0' in metrics

    def test_the_answer_pass_discourages_repetition(self):
        client, backend = make_client(["```\n[]\n```", "17 degrees."])
        with client:
            chat(client, messages=AFTER_RESULT)
        assert [r.params.repeat_penalty for r in backend.requests] == [1.0, 1.1]

    # The loop guard under tool_choice "required" and a named choice: tests/server/test_structured_tools.py.

    def test_a_new_call_after_results_is_returned(self):
        client, _ = make_client(['```\n[{"name": "get_weather", "arguments": {"city": "Rome"}}]\n```'])
        with client:
            message = chat(client, messages=AFTER_RESULT).json()["choices"][0]["message"]
        assert [json.loads(c["function"]["arguments"]) for c in message["tool_calls"]] == [{"city": "Rome"}]

    def test_loop_guard_can_be_turned_off(self):
        client, backend = make_client([WEATHER_CALL], loop_guard=False)
        with client:
            message = chat(client, messages=AFTER_RESULT).json()["choices"][0]["message"]
        assert len(message["tool_calls"]) == 1 and len(backend.requests) == 1

    def test_duplicates_in_one_response_collapse(self):
        twice = WEATHER_CALL.replace("}}]", '}}, {"name": "get_weather", "arguments": {"city": "Paris"}}]')
        client, _ = make_client([twice])
        with client:
            message = chat(client).json()["choices"][0]["message"]
            metrics = client.get("/metrics").text
        assert len(message["tool_calls"]) == 1
        assert 'hammer_duplicate_calls_dropped_total{reason="duplicate"} 1.0' in metrics

    def test_dedupe_can_be_turned_off(self):
        twice = WEATHER_CALL.replace("}}]", '}}, {"name": "get_weather", "arguments": {"city": "Paris"}}]')
        client, _ = make_client([twice], dedupe_calls=False)
        with client:
            assert len(chat(client).json()["choices"][0]["message"]["tool_calls"]) == 2

    def test_without_tools_earlier_calls_are_rendered_as_text(self):
        client, backend = make_client(["17 degrees."])
        with client:
            message = chat(client, tools=None, messages=AFTER_RESULT).json()["choices"][0]["message"]
        prompt = backend.requests[0].prompt
        assert message["content"] == "17 degrees."
        assert 'get_weather({"city": "Paris"})' in prompt and "<|im_start|>tool" not in prompt
        assert "<|im_start|>assistant\n<|im_end|>" not in prompt, "no empty assistant turn"

    def test_empty_list_on_a_fresh_question_is_still_a_refusal(self):
        client, backend = make_client(["```\n[]\n```"], refusal_message="Nothing fits.")
        with client:
            message = chat(client).json()["choices"][0]["message"]
        assert message["content"] == "Nothing fits." and len(backend.requests) == 1


class TestTextLimits:
    def test_lone_surrogate_is_a_400_naming_the_field(self):
        client, _ = make_client(["ok"])
        raw = b'{"model": "fake", "messages": [{"role": "user", "content": "a\\ud800b"}]}'
        with client:
            response = client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "messages[0].content"

    def test_more_than_four_stop_sequences_is_a_400(self):
        client, _ = make_client(["ok"])
        with client:
            response = chat(client, tools=None, stop=["a", "b", "c", "d", "e"])
        assert response.status_code == 400 and response.json()["error"]["param"] == "stop"


class CountingBackend(FakeBackend):
    """Says a token stands for at most 4 characters, and records what it had to tokenize."""

    counted: list[int]

    async def start(self):
        self.counted = []
        info = await super().start()
        info.max_token_chars = 4
        return info

    def count_tokens(self, prompt, plain_texts=()):
        self.counted.append(len(prompt))
        return super().count_tokens(prompt, plain_texts)


class TestUnfittablePrompts:
    def test_a_prompt_too_long_for_any_tokenization_is_refused_untokenized(self):
        config = Settings(served_model_name="fake", n_ctx=1024)
        backend = CountingBackend(config)
        with TestClient(create_app(config, backend)) as client:
            response = chat(client, tools=None, messages=user("x" * 5000))
            assert response.status_code == 400 and response.json()["error"]["code"] == "context_length_exceeded"
            assert backend.counted == []
            assert chat(client, tools=None, messages=user("x" * 100)).status_code == 200


class TestSamplingParameters:
    def test_penalties_bias_and_logprobs_reach_the_backend(self):
        client, backend = make_client(["Hello"])
        with client:
            chat(client, tools=None, frequency_penalty=0.5, presence_penalty=-1, logit_bias={"7": -100, "42": 3},
                 logprobs=True, top_logprobs=2)
        params = backend.requests[0].params
        assert (params.frequency_penalty, params.presence_penalty) == (0.5, -1)
        assert params.logit_bias == ((7, -100), (42, 3)) and params.logprobs == 2

    def test_unset_temperature_and_top_p_follow_the_model_else_one(self):
        class Recommending(FakeBackend):
            async def start(self):
                info = await super().start()
                info.sampling = {"temperature": 0.3}
                return info

        config = Settings(served_model_name="fake")
        backend = Recommending(config)
        with TestClient(create_app(config, backend)) as client:
            chat(client, tools=None)
            chat(client, tools=None, temperature=0, top_p=0.5)
        assert [(r.params.temperature, r.params.top_p) for r in backend.requests] == [(0.3, 1.0), (0, 0.5)]

    @pytest.mark.parametrize("body,param", [
        ({"logit_bias": {"not-a-token": 1}}, "logit_bias"),
        ({"logit_bias": {"3": 101}}, "logit_bias"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"frequency_penalty": 2.5}, "frequency_penalty"),
        ({"function_call": "auto"}, "function_call"),
        ({"functions": [{"name": "f"}], "tools": TOOLS}, "functions"),
    ])
    def test_out_of_range_is_a_400_naming_it(self, body, param):
        client, _ = make_client(["ok"])
        with client:
            response = chat(client, **{"tools": None, **body})
        assert response.status_code == 400 and response.json()["error"]["param"] == param

    def test_logprobs_of_content_in_both_modes(self):
        client, _ = make_client(["Hey"])
        with client:
            plain = chat(client, tools=None, logprobs=True, top_logprobs=1).json()["choices"][0]["logprobs"]
            events = stream_events(client, tools=None, logprobs=True)
            absent = chat(client, tools=None).json()["choices"][0]["logprobs"]
        assert [e["token"] for e in plain["content"]] == ["H", "e", "y"]
        assert plain["content"][0]["top_logprobs"] == [{"token": "?", "logprob": -2.0, "bytes": [63]}]
        streamed = [e for ev in events for c in ev["choices"] if c.get("logprobs") for e in c["logprobs"]["content"]]
        assert [e["token"] for e in streamed] == ["H", "e", "y"] and absent is None

    def test_tool_calls_carry_no_logprobs_but_the_answer_pass_does(self):
        client, _ = make_client([WEATHER_CALL, "```\n[]\n```", "17."])
        with client:
            calls = chat(client, logprobs=True).json()["choices"][0]
            answer = chat(client, messages=AFTER_RESULT, logprobs=True).json()["choices"][0]
        assert calls["logprobs"] == {"content": []}
        assert "".join(e["token"] for e in answer["logprobs"]["content"]) == "17."

    def test_stop_applies_to_the_answer_pass(self):
        client, backend = make_client(["```\n[]\n```", "17 degrees. More."])
        with client:
            chat(client, messages=AFTER_RESULT, stop=["."])
        first, second = backend.requests
        assert first.params.stop == () and second.params.stop == (".",)


LEGACY_FUNCTIONS = [t["function"] for t in TOOLS]


class TestLegacyFunctions:
    def test_functions_are_answered_with_function_call(self):
        client, backend = make_client([WEATHER_CALL])
        with client:
            choice = chat(client, tools=None, functions=LEGACY_FUNCTIONS).json()["choices"][0]
            events = stream_events(client, tools=None, functions=LEGACY_FUNCTIONS)
        assert choice["finish_reason"] == "function_call" and choice["message"]["tool_calls"] is None
        assert choice["message"]["function_call"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
        assert backend.requests[0].constraint.json_schema["maxItems"] == 1, "the legacy API returns one call"
        deltas = [c["delta"] for e in events for c in e["choices"]]
        assert [d["function_call"] for d in deltas if "function_call" in d] == [
            {"name": "get_weather", "arguments": ""}, {"arguments": '{"city": "Paris"}'}]
        assert events[-1]["choices"][0]["finish_reason"] == "function_call"

    def test_function_call_names_the_function(self):
        client, backend = make_client([WEATHER_CALL])
        with client:
            chat(client, tools=None, functions=LEGACY_FUNCTIONS, function_call={"name": "get_weather"})
        assert backend.requests[0].constraint.json_schema["minItems"] == 1

    def test_legacy_history_is_understood(self):
        client, backend = make_client(["```\n[]\n```", "17 degrees."])
        messages = [*user("Weather in Paris?"),
                    {"role": "assistant", "content": None,
                     "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
                    {"role": "function", "name": "get_weather", "content": "It is 17 degrees."}]
        with client:
            message = chat(client, tools=None, functions=LEGACY_FUNCTIONS, messages=messages).json()
        assert message["choices"][0]["message"]["content"] == "17 degrees."
        assert '[{"name": "get_weather", "arguments": {"city": "Paris"}}]' in backend.requests[0].prompt
        assert "It is 17 degrees." in backend.requests[0].prompt


class TestModelRoute:
    def test_the_served_model_and_a_404(self):
        client, _ = make_client(["ok"])
        with client:
            assert client.get("/v1/models/fake").json()["id"] == "fake"
            missing = client.get("/v1/models/gpt-4")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
