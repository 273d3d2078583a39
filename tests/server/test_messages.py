"""The Messages API end to end: the real server on the real model, through the anthropic SDK and LangChain."""

from __future__ import annotations

from typing import Any

import anthropic
import jsonschema
import pytest

from tests.conftest import running_server
from tests.server.test_agents import (
    MAX_TURNS,
    QUESTION,
    RESULT,
    WEATHER_DESCRIPTION,
    Location,
    Unit,
    WeatherArgs,
    WeatherTool,
    assert_answer,
)
from tests.server.tools_fixtures import SCHEMAS, TOOLS

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
# The chat fixtures' tools in the Messages shape: name, description and input_schema.
MESSAGES_TOOLS = [{"name": t["function"]["name"], "description": t["function"]["description"],
                   "input_schema": t["function"]["parameters"]} for t in TOOLS]
WEATHER_QUESTION = [{"role": "user", "content": "What's the weather like in Paris?"}]
# The SDK no longer takes temperature as an argument (newer Claude models fix it); the API still does.
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def client(llama_server: str) -> anthropic.Anthropic:
    # The SDK posts to {base_url}/v1/messages: the server's root, not /v1.
    return anthropic.Anthropic(base_url=llama_server, api_key="unused", max_retries=0, timeout=300)


def create(client: anthropic.Anthropic, **kwargs: Any):
    kwargs.setdefault("model", MODEL)
    kwargs.setdefault("max_tokens", 256)
    kwargs.setdefault("extra_body", GREEDY)
    return client.messages.create(**kwargs)


def tool_uses(message) -> list[Any]:
    uses = [b for b in message.content if b.type == "tool_use"]
    for use in uses:
        assert use.id.startswith("toolu_")
        jsonschema.validate(use.input, SCHEMAS[use.name])
    return uses


@pytest.fixture(scope="module")
def weather_call(client):
    """The first message and its tool_use blocks (the model may call twice, e.g. in celsius and fahrenheit)."""
    message = create(client, messages=WEATHER_QUESTION, tools=MESSAGES_TOOLS)
    uses = tool_uses(message)
    assert message.stop_reason == "tool_use" and uses, message
    assert uses[0].name == "get_weather" and "paris" in uses[0].input["city"].lower(), uses
    return message, uses


def test_tool_use(weather_call):
    message, uses = weather_call
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert message.model == MODEL and [b.type for b in message.content] == ["tool_use"] * len(uses)
    assert message.usage.input_tokens > 300 and message.usage.output_tokens > 5


def test_tool_result_gives_the_answer(client, weather_call):
    message, uses = weather_call
    results = [{"type": "tool_result", "tool_use_id": u.id, "content": RESULT} for u in uses]
    answer = create(client, tools=MESSAGES_TOOLS, messages=[
        *WEATHER_QUESTION, {"role": "assistant", "content": message.content}, {"role": "user", "content": results}])
    assert [b.type for b in answer.content] == ["text"] and answer.stop_reason == "end_turn", answer
    assert "17" in answer.content[0].text, answer.content[0].text


def test_count_tokens_is_the_prompt_of_the_call(client, weather_call):
    message, _ = weather_call
    counted = client.messages.count_tokens(model=MODEL, messages=WEATHER_QUESTION, tools=MESSAGES_TOOLS)
    assert counted.input_tokens == message.usage.input_tokens


def test_stream_accumulates_the_created_message(client):
    # One call at most: at temperature 0 llama.cpp's reuse of the cached prompt prefix can still tip
    # a near tie between closing the list and a second call.
    request = {"model": MODEL, "max_tokens": 256, "messages": WEATHER_QUESTION, "tools": MESSAGES_TOOLS,
               "tool_choice": {"type": "auto", "disable_parallel_tool_use": True}, "extra_body": GREEDY}
    created = client.messages.create(**request)
    with client.messages.stream(**request) as stream:
        kinds = [event.type for event in stream]
        streamed = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "input_json" in kinds

    def shape(message) -> list[tuple[str, str, Any]]:
        return [(b.type, b.name, b.input) for b in message.content]

    assert len(tool_uses(streamed)) == 1 and shape(streamed) == shape(created)
    assert streamed.stop_reason == created.stop_reason == "tool_use"
    assert streamed.usage.input_tokens == created.usage.input_tokens and streamed.usage.output_tokens > 0


def test_a_stop_sequence_is_named_as_the_stop(client):
    # Any English answer holds an "e": the text ends before the first one, and says so.
    request = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "Name three colors."}],
               "stop_sequences": ["zzz", "e"], "extra_body": GREEDY}
    created = client.messages.create(**request)
    with client.messages.stream(**request) as stream:
        streamed = stream.get_final_message()
    for message in (created, streamed):
        assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "e")
        assert "e" not in message.content[0].text
    assert streamed.content[0].text == created.content[0].text


def test_tool_choice_any_calls_on_small_talk(client):
    message = create(client, messages=[{"role": "user", "content": "Hello, how are you today?"}],
                     tools=MESSAGES_TOOLS, tool_choice={"type": "any"})
    assert tool_uses(message) and message.stop_reason == "tool_use", message


def test_tool_choice_tool_calls_the_named_tool(client):
    message = create(client, messages=WEATHER_QUESTION, tools=MESSAGES_TOOLS,
                     tool_choice={"type": "tool", "name": "send_email"})
    uses = tool_uses(message)
    assert uses and {u.name for u in uses} == {"send_email"}, message


def test_tool_choice_none_answers_in_text(client):
    message = create(client, messages=WEATHER_QUESTION, tools=MESSAGES_TOOLS, tool_choice={"type": "none"},
                     max_tokens=40)
    assert message.content and {b.type for b in message.content} == {"text"}, message
    assert message.stop_reason in ("end_turn", "max_tokens") and message.content[0].text.strip()


@pytest.mark.parametrize("kwargs, named", [
    ({"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}]},
     "'image' blocks are not supported"),
    ({"messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}}]}]},
     "'document' blocks are not supported"),
    ({"messages": WEATHER_QUESTION, "thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking"),
    ({"messages": WEATHER_QUESTION, "tools": [{"type": "web_search_20250305", "name": "web_search"}]},
     "tools[0].type"),
])
def test_unsupported_input_is_a_400_in_anthropic_shape(client, kwargs, named):
    with pytest.raises(anthropic.BadRequestError) as raised:
        create(client, **kwargs)
    body = raised.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
    assert named in body["error"]["message"], body


def test_x_api_key():
    with running_server("--backend", "llama", "--api-key", "k1,k2") as url:
        keyed = anthropic.Anthropic(base_url=url, api_key="k2", max_retries=0, timeout=300)
        message = create(keyed, messages=[{"role": "user", "content": "Say hello."}], max_tokens=5)
        assert message.content and message.usage.output_tokens <= 5
        with pytest.raises(anthropic.AuthenticationError) as raised:
            anthropic.Anthropic(base_url=url, api_key="wrong", max_retries=0).messages.count_tokens(
                model=MODEL, messages=WEATHER_QUESTION)
        assert raised.value.body["type"] == "error"
        assert raised.value.body["error"]["type"] == "authentication_error"


def test_langchain_chat_anthropic_agent(llama_server):
    from langchain_anthropic import ChatAnthropic
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool

    weather = WeatherTool()

    @tool(args_schema=WeatherArgs, description=WEATHER_DESCRIPTION)
    def get_weather(location: Location, unit: Unit = "celsius") -> str:
        return weather(location, unit)

    # max_tokens left at LangChain's default (4096, this server's whole context): bounded by the context, not refused.
    llm = ChatAnthropic(base_url=llama_server, api_key="unused", model=MODEL, temperature=0, max_retries=0,
                        default_request_timeout=300)
    bound = llm.bind_tools([get_weather])
    messages: list[Any] = [HumanMessage(QUESTION)]
    for _ in range(MAX_TURNS):
        reply = bound.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            break
        for call in reply.tool_calls:
            assert call["name"] == "get_weather"
            messages.append(ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"]))
    else:
        pytest.fail(f"no answer after {MAX_TURNS} turns: {messages}")
    assert reply.response_metadata["stop_reason"] == "end_turn"
    assert_answer(weather, reply.text)
