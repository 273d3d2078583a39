"""Tools and ``response_format`` in one request; agent loops that end under every ``tool_choice``;
the wire details a client library reads (issue 23).

``TestScripted`` pins the serving decisions on a scripted backend (which pass runs under which
grammar); the other classes run the real server on the embedded model at temperature 0, through
the openai SDK and raw HTTP. The client libraries' own agents are in ``test_agents.py``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from chat_stream import parse_sse  # loadtest/, on the path by pytest's pythonpath (pyproject.toml)
from fastapi.testclient import TestClient
from hammer.server.app import create_app
from hammer.server.backends.fake import FakeBackend
from hammer.server.settings import Settings
from pydantic import BaseModel

from tests.server.tools_fixtures import EMAIL, TOOLS, WEATHER, user

MODEL = "smollm2-135m-instruct"
RESULT = "It is 17 degrees in Paris."


class Forecast(BaseModel):
    city: str
    temperature_celsius: int


class GetWeather(BaseModel):
    """Get the current weather for a city"""

    city: str


RESPONSE_FORMAT = {"type": "json_schema",
                   "json_schema": {"name": "forecast", "schema": Forecast.model_json_schema(), "strict": True}}
AFTER_RESULT = [*user("What is the weather in Paris?"),
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
                    "name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                {"role": "tool", "tool_call_id": "c1", "content": RESULT}]
FINAL_RESULT = {"type": "function", "function": {
    "name": "final_result", "description": "The final response which ends this conversation",
    "parameters": {"type": "object", "properties": {"name": {"type": "string"}, "country": {"type": "string"}},
                   "required": ["name", "country"]}}}
IMAGE_MESSAGE = [{"role": "user", "content": [
    {"type": "text", "text": "What is in this picture?"},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]


# -- the serving decisions, on a scripted backend ------------------------------------------------

WEATHER_CALL = '```\n[{"name": "get_weather", "arguments": {"city": "Paris"}}]\n```'
EMAIL_CALL = '```\n[{"name": "send_email", "arguments": {"to": "a@b.c", "subject": "s", "body": "b"}}]\n```'
FORECAST = '{"city": "Paris", "temperature_celsius": 17}'


def scripted(replies: list[str], **settings: Any) -> tuple[TestClient, FakeBackend]:
    config = Settings(served_model_name="fake", **settings)
    backend = FakeBackend(config, replies=replies)
    return TestClient(create_app(config, backend)), backend


def post(client: TestClient, **body: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": "fake", "messages": user("hi"), "tools": TOOLS, **body})


def names(constraint: Any) -> list[str]:
    """The tool names a calls grammar allows."""
    items = constraint.json_schema["items"]
    return [i["properties"]["name"]["const"] for i in items.get("anyOf", [items])]


class TestScripted:
    def test_the_answer_pass_runs_under_the_response_format(self):
        client, backend = scripted(["```\n[]\n```", FORECAST])
        with client:
            response = post(client, messages=AFTER_RESULT, response_format=RESPONSE_FORMAT)
        assert response.status_code == 200, response.text
        choice = response.json()["choices"][0]
        assert choice["finish_reason"] == "stop" and choice["message"]["tool_calls"] is None
        assert Forecast.model_validate_json(choice["message"]["content"]).temperature_celsius == 17
        calls_pass, answer_pass = backend.requests
        assert names(calls_pass.constraint) == ["get_weather", "send_email"]
        assert answer_pass.constraint.json_schema["required"] == ["city", "temperature_celsius"]
        assert answer_pass.constraint.prefix == "" and "[BEGIN OF AVAILABLE TOOLS]" not in answer_pass.prompt

    def test_tool_turns_stay_tool_turns(self):
        client, backend = scripted([WEATHER_CALL])
        with client:
            choice = post(client, response_format={"type": "json_object"}).json()["choices"][0]
        assert choice["finish_reason"] == "tool_calls" and len(choice["message"]["tool_calls"]) == 1
        assert len(backend.requests) == 1

    def test_an_empty_list_on_a_fresh_question_is_answered_in_the_format(self):
        client, backend = scripted(["```\n[]\n```", FORECAST], refusal_message="Nothing fits.")
        with client:
            message = post(client, response_format=RESPONSE_FORMAT).json()["choices"][0]["message"]
        assert message["content"] == FORECAST and len(backend.requests) == 2

    def test_a_schema_no_grammar_can_enforce_is_a_400_naming_response_format(self):
        client, _ = scripted(["ok"])
        bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"a": {"not": {"type": "string"}}}}}}
        with client:
            response = post(client, response_format=bad)
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "response_format.json_schema.schema"

    def test_required_offers_the_tools_not_called_after_a_repeat(self):
        client, backend = scripted([WEATHER_CALL, EMAIL_CALL])
        with client:
            response = post(client, messages=AFTER_RESULT, tool_choice="required")
            metrics = client.get("/metrics").text
        message = response.json()["choices"][0]["message"]
        assert [c["function"]["name"] for c in message["tool_calls"]] == ["send_email"]
        first, offered = backend.requests
        assert names(first.constraint) == ["get_weather", "send_email"]
        assert names(offered.constraint) == ["send_email"] and offered.constraint.json_schema["minItems"] == 1
        assert offered.prompt == first.prompt
        assert response.json()["usage"]["prompt_tokens"] == 2 * backend.count_tokens(first.prompt)
        assert 'hammer_duplicate_calls_dropped_total{reason="repeated"} 1.0' in metrics

    def test_required_ends_with_the_answer_when_every_tool_was_called(self):
        client, backend = scripted([WEATHER_CALL, "It is 17 degrees."])
        with client:
            choice = post(client, messages=AFTER_RESULT, tools=[WEATHER], tool_choice="required").json()["choices"][0]
        assert choice["message"]["content"] == "It is 17 degrees." and choice["message"]["tool_calls"] is None
        assert backend.requests[1].constraint is None

    def test_a_named_choice_that_repeats_ends_with_the_answer(self):
        client, backend = scripted([WEATHER_CALL, FORECAST])
        named = {"type": "function", "function": {"name": "get_weather"}}
        with client:
            message = post(client, messages=AFTER_RESULT, tool_choice=named,
                           response_format=RESPONSE_FORMAT).json()["choices"][0]["message"]
        assert message["tool_calls"] is None and message["content"] == FORECAST
        assert backend.requests[1].constraint.json_schema["required"] == ["city", "temperature_celsius"]

    def test_the_loop_guard_off_returns_the_repeat(self):
        client, backend = scripted([WEATHER_CALL], loop_guard=False)
        with client:
            message = post(client, messages=AFTER_RESULT, tool_choice="required").json()["choices"][0]["message"]
        assert len(message["tool_calls"]) == 1 and len(backend.requests) == 1

    def test_a_named_choice_allows_one_call(self):
        client, backend = scripted([WEATHER_CALL])
        with client:
            post(client, tool_choice={"type": "function", "function": {"name": "get_weather"}})
        assert backend.requests[0].constraint.json_schema["maxItems"] == 1

    def test_complete_calls_before_a_cut_one_finish_as_tool_calls(self):
        two = WEATHER_CALL.replace("}}]", '}}, {"name": "get_weather", "arguments": {"city": "Rome"}}]')
        cut = two.index("Rome")  # the scripted backend writes one character per token
        client, _ = scripted([two])
        with client:
            choice = post(client, max_tokens=cut).json()["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        assert [json.loads(c["function"]["arguments"]) for c in choice["message"]["tool_calls"]] == [{"city": "Paris"}]
        assert "max_tokens" in choice["message"]["invalid_tool_calls"][0]["error"]
        assert choice["message"]["content"] is None

    def test_a_cut_call_leaves_content_null(self):
        client, _ = scripted([WEATHER_CALL])
        with client:
            choice = post(client, max_tokens=20).json()["choices"][0]
            events, _ = parse_sse(post(client, max_tokens=20, stream=True).text)
        assert choice["finish_reason"] == "length" and choice["message"]["content"] is None
        assert "max_tokens" in choice["message"]["invalid_tool_calls"][0]["error"]
        assert not any(e["choices"][0]["delta"].get("content") for e in events if e.get("choices"))

    @pytest.mark.parametrize("tools,first", [(TOOLS, {"role": "assistant"}),
                                             (None, {"role": "assistant", "content": ""})])
    def test_the_first_streamed_delta(self, tools, first):
        client, _ = scripted([WEATHER_CALL if tools else "Hello"])
        with client:
            events, done = parse_sse(post(client, tools=tools, stream=True).text)
        assert done and events[0]["choices"][0]["delta"] == first

    @pytest.mark.parametrize("kind,part,words", [
        ("image_url", {"image_url": {"url": "https://example.com/cat.png"}}, "images are not supported"),
        ("input_audio", {"input_audio": {"data": "", "format": "wav"}}, "audio is not supported"),
        ("file", {"file": {"file_id": "file-1"}}, "files are not supported"),
    ])
    def test_non_text_parts_are_a_clear_400(self, kind, part, words):
        client, _ = scripted(["ok"])
        content = [{"type": "text", "text": "this:"}, {"type": kind, **part}]
        messages = [*user("hi"), {"role": "user", "content": content}]
        with client:
            response = post(client, messages=messages)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["param"] == "messages[1].content[1]" and words in error["message"]
        assert f"is of type '{kind}'" in error["message"]


# -- the real server -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def url(llama_server: str) -> str:
    return llama_server


@pytest.fixture(scope="module")
def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300)


def create(client: openai.OpenAI, **kwargs: Any) -> Any:
    return client.chat.completions.create(model=MODEL, temperature=0, seed=0, **kwargs)


@pytest.mark.slow
class TestToolsWithResponseFormat:
    def test_the_answer_validates_against_the_schema(self, client):
        choice = create(client, messages=AFTER_RESULT, tools=[WEATHER], response_format=RESPONSE_FORMAT).choices[0]
        assert choice.finish_reason == "stop" and not choice.message.tool_calls, choice
        Forecast.model_validate_json(choice.message.content)

    def test_the_sdk_stream_helper_parses_the_streamed_answer(self, client):
        """openai's stream helper accumulates the deltas (a role-only first delta with tools) and parses."""
        with client.chat.completions.stream(model=MODEL, temperature=0, seed=0, messages=AFTER_RESULT,
                                            tools=[openai.pydantic_function_tool(GetWeather, name="get_weather")],
                                            response_format=Forecast) as stream:
            completion = stream.get_final_completion()
        message = completion.choices[0].message
        assert not message.tool_calls and isinstance(message.parsed, Forecast), message

    def test_tool_choice_none_answers_in_the_format(self, client):
        message = create(client, messages=user("What is the weather in Paris?"), tools=[WEATHER], tool_choice="none",
                         response_format=RESPONSE_FORMAT).choices[0].message
        Forecast.model_validate_json(message.content)

    def test_parse_with_tools_parses(self, client):
        messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
        ran = []
        for _ in range(4):
            completion = client.chat.completions.parse(
                model=MODEL, temperature=0, seed=0, messages=messages,
                tools=[openai.pydantic_function_tool(GetWeather)], response_format=Forecast)
            message = completion.choices[0].message
            if not message.tool_calls:
                break
            messages.append(message)
            for call in message.tool_calls:
                ran.append(call.function.parsed_arguments)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": RESULT})
        else:
            pytest.fail(f"no answer after 4 turns: {messages}")
        assert isinstance(message.parsed, Forecast), message
        assert ran and all(isinstance(a, GetWeather) for a in ran), ran

    @pytest.mark.parametrize("stream", [False, True])
    def test_responses_text_format_with_tools(self, client, stream):
        tool = {"type": "function", "name": "get_weather", "description": "Get the current weather for a city",
                "parameters": WEATHER["function"]["parameters"]}
        text = {"format": {"type": "json_schema", "name": "forecast", "schema": Forecast.model_json_schema()}}
        response = client.responses.create(model=MODEL, temperature=0, tools=[tool], text=text, stream=stream, input=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
            {"type": "function_call_output", "call_id": "c1", "output": RESULT}])
        if stream:
            [response] = [e.response for e in response if e.type == "response.completed"]
        assert response.status == "completed"
        Forecast.model_validate_json(response.output_text)


@pytest.mark.slow
class TestEveryToolChoiceEnds:
    def test_required_after_a_result_never_repeats_it(self, client):
        """The issue's reproduction: pydantic-ai's tools, its "required", the weather answered."""
        message = create(client, messages=AFTER_RESULT, tools=[WEATHER, FINAL_RESULT],
                         tool_choice="required").choices[0].message
        calls = [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]
        assert calls and ("get_weather", {"city": "Paris"}) not in calls, calls

    def test_a_required_loop_ends_with_its_final_result(self, client):
        messages: list[Any] = [*user("What is the weather in Paris? Then give the city's name and country.")]
        for _ in range(4):
            message = create(client, messages=messages, tools=[WEATHER, FINAL_RESULT],
                             tool_choice="required").choices[0].message
            assert message.tool_calls, f"required asked for a call: {message}"
            if "final_result" in [c.function.name for c in message.tool_calls]:
                break
            messages.append(message.model_dump(exclude_none=True))
            messages += [{"role": "tool", "tool_call_id": c.id, "content": RESULT} for c in message.tool_calls]
        else:
            pytest.fail(f"no final_result after 4 turns: {json.dumps(messages)}")


@pytest.mark.slow
class TestWireDetails:
    def test_a_streamed_call_leaves_content_null(self, client):
        """The SDK accumulates the deltas: a first delta with content "" made the message's content ""."""
        with client.chat.completions.stream(model=MODEL, temperature=0, seed=0, tool_choice="required",
                                            messages=user("What is the weather in Paris?"),
                                            tools=[openai.pydantic_function_tool(GetWeather, name="get_weather")]
                                            ) as stream:
            completion = stream.get_final_completion()
        message = completion.choices[0].message
        assert message.tool_calls and message.content is None, message

    def test_a_cut_call_is_not_explained_in_content(self, client):
        choice = create(client, messages=user("Email bob@example.com a long report on the weather."),
                        tools=[EMAIL], tool_choice="required", max_tokens=12).choices[0]
        assert choice.finish_reason == "length" and choice.message.tool_calls is None
        assert choice.message.content is None
        assert "max_tokens" in (choice.message.model_extra or {})["invalid_tool_calls"][0]["error"]

    def test_an_image_is_a_clear_400(self, client):
        with pytest.raises(openai.BadRequestError) as info:
            create(client, messages=IMAGE_MESSAGE)
        assert info.value.status_code == 400
        assert info.value.body["param"] == "messages[0].content[1]"
        assert "images are not supported" in info.value.body["message"]
