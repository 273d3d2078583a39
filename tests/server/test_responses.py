"""The Responses API end to end: the real server on the real model, through the openai SDK and the Agents SDK."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from tests.server.test_agents import MAX_TURNS, QUESTION, RESULT, Location, Unit, WeatherTool, assert_answer
from tests.server.tools_fixtures import SCHEMAS, TOOLS

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
# The chat fixtures' tools in the Responses shape: name, description and parameters at the top.
RESPONSES_TOOLS = [{"type": "function", **t["function"]} for t in TOOLS]
WEATHER_QUESTION = "What's the weather like in Paris?"


@pytest.fixture(scope="module")
def base_url(llama_server: str) -> str:
    return f"{llama_server}/v1"


@pytest.fixture(scope="module")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=300)


def create(client: openai.OpenAI, **kwargs: Any):
    kwargs.setdefault("model", MODEL)
    kwargs.setdefault("temperature", 0)
    return client.responses.create(**kwargs)


def assert_weather_call(response) -> Any:
    assert response.status == "completed", response
    calls = [item for item in response.output if item.type == "function_call"]
    assert calls, f"expected a function_call item, got {response.output}"
    for call in calls:
        assert call.call_id.startswith("call_") and call.id.startswith("fc_") and call.status == "completed"
        jsonschema.validate(json.loads(call.arguments), SCHEMAS[call.name])
    assert calls[0].name == "get_weather" and "paris" in calls[0].arguments.lower()
    return calls


@pytest.fixture(scope="module")
def weather_call(client):
    """The first response and its calls (the model may call twice, e.g. in celsius and in fahrenheit)."""
    response = create(client, input=WEATHER_QUESTION, tools=RESPONSES_TOOLS)
    return response, assert_weather_call(response)


def outputs(calls) -> list[dict[str, Any]]:
    """A result for every call: a call left unanswered is still open, and the model may make it again."""
    return [{"type": "function_call_output", "call_id": call.call_id, "output": RESULT} for call in calls]


def test_function_call(weather_call):
    response, _ = weather_call
    assert response.object == "response" and response.id.startswith("resp_") and response.model == MODEL
    assert response.usage.input_tokens > 300 and response.usage.output_tokens > 5
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert [t.name for t in response.tools] == ["get_weather", "send_email"]


def test_tool_output_gives_the_answer(client, weather_call):
    _, calls = weather_call
    items = [{"role": "user", "content": WEATHER_QUESTION}, *(c.model_dump(exclude_none=True) for c in calls),
             *outputs(calls)]
    response = create(client, input=items, tools=RESPONSES_TOOLS)
    assert response.status == "completed" and [i.type for i in response.output] == ["message"], response
    assert "17" in response.output_text, response.output_text


def test_previous_response_id_continues(client, weather_call):
    first, calls = weather_call
    response = create(client, previous_response_id=first.id, tools=RESPONSES_TOOLS, input=outputs(calls))
    assert response.previous_response_id == first.id
    assert "17" in response.output_text, response.output_text


def test_json_schema_output(client):
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
                                               "country": {"type": "string", "maxLength": 40}},
              "required": ["city", "country"], "additionalProperties": False}
    response = create(client, input="Name the capital of France and its country as JSON.", max_output_tokens=100,
                      text={"format": {"type": "json_schema", "name": "place", "schema": schema, "strict": True}})
    assert response.status == "completed", response
    jsonschema.validate(json.loads(response.output_text), schema)
    assert response.text.format.type == "json_schema"


def test_stream_matches_the_response(client):
    # One call at most: at temperature 0 llama.cpp's reuse of the cached prompt prefix can still tip
    # a near tie between closing the list and a second call.
    request = {"model": MODEL, "input": WEATHER_QUESTION, "tools": RESPONSES_TOOLS, "temperature": 0,
               "parallel_tool_calls": False}
    plain = client.responses.create(**request)
    with client.responses.stream(**request) as stream:
        events = list(stream)
        final = stream.get_final_response()
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers) and numbers[0] == 0
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-1] == "response.completed"
    assert kinds.index("response.function_call_arguments.done") < kinds.index("response.output_item.done")

    def shape(response) -> list[tuple[str, str, str]]:
        return [(i.type, i.name, i.arguments) for i in response.output]

    assert_weather_call(final)
    assert shape(final) == shape(plain) and final.status == plain.status == "completed"
    assert final.usage.input_tokens == plain.usage.input_tokens and final.usage.output_tokens > 0
    assert final.model_dump().keys() == plain.model_dump().keys() and final.parallel_tool_calls is False


def test_tiny_max_output_tokens_is_incomplete(client):
    response = create(client, input="Write a long story about a dragon.", max_output_tokens=5)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 5 and response.output_text


def test_get_delete_and_unknown(client, base_url):
    created = create(client, input="Say hello.", max_output_tokens=10)
    assert client.responses.retrieve(created.id).output_text == created.output_text
    assert httpx.delete(f"{base_url}/responses/{created.id}").json() == {
        "id": created.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError) as raised:
        client.responses.retrieve(created.id)
    assert raised.value.body["param"] == "response_id"
    with pytest.raises(openai.NotFoundError):
        create(client, input="Hi", previous_response_id="resp_unknown")


def test_bad_tool_schema_names_the_responses_field(client):
    tool = {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {"a": {"not": {}}}}}
    with pytest.raises(openai.BadRequestError) as raised:
        create(client, input="Hi", tools=[tool])
    assert raised.value.status_code == 400 and raised.value.body["param"] == "tools[0].parameters"


def test_agents_sdk_default_responses_model(base_url):
    from agents import Agent, ModelSettings, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)
    weather = WeatherTool()
    paths: list[str] = []

    async def record(request: httpx.Request) -> None:
        paths.append(request.url.path)

    @function_tool
    def get_weather(location: Location, unit: Unit = "celsius") -> str:
        """Get the current weather at a location."""
        return weather(location, unit)

    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0,
                                http_client=httpx.AsyncClient(event_hooks={"request": [record]}, timeout=300))
    agent = Agent(name="assistant", tools=[get_weather], model=OpenAIResponsesModel(model=MODEL, openai_client=client),
                  model_settings=ModelSettings(temperature=0))
    result = asyncio.run(Runner.run(agent, QUESTION, max_turns=MAX_TURNS))  # MaxTurnsExceeded if it loops
    assert paths and all(p.endswith("/responses") for p in paths), paths
    assert_answer(weather, result.final_output)
