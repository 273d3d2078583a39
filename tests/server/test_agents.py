"""Agent loops from real client libraries end with an answer that states the tool's result.

The real server on the embedded model, driven the way an agent developer would: the openai SDK
loop written by hand, the OpenAI Agents SDK (chat-completions model), LangChain (``bind_tools`` +
``ToolMessage``) and pydantic-ai. The tool takes a nested pydantic model, so the schema each
library sends has ``$defs`` + ``$ref`` (a second parameter keeps pydantic-ai from using the
nested model as the whole parameter schema). Each test checks that the tool ran, that the loop ended
before its turn limit, and that the final answer is text holding the tool's result. The last
section gives the same agents an output type as well as tools (the Agents SDK's ``output_type``
on chat and Responses models, LangChain's ``ProviderStrategy``, pydantic-ai's ``output_type``,
instructor's ``create_iterable``): each must end with an instance of it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

import httpx
import openai
import pytest
from pydantic import BaseModel, Field

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
SEED = 0
# Two model requests suffice (the call, then the answer); the rest is headroom for one more call.
MAX_TURNS = 4
QUESTION = "What is the weather in Paris, France?"
# A short sentence the answer turn can repeat; "17" is what the final answer must state.
RESULT = "It is 17 degrees in Paris."
EXPECTED = "17"


class Location(BaseModel):
    city: str = Field(description="City name, e.g. Paris")
    country: str = Field(description="Country name, e.g. France")


Unit = Literal["celsius", "fahrenheit"]


class WeatherArgs(BaseModel):
    location: Location
    unit: Unit = "celsius"


class WeatherTool:
    """The fake tool: records each call's arguments and answers the same sentence."""

    def __init__(self) -> None:
        self.calls: list[Location] = []

    def __call__(self, location: Location, unit: Unit = "celsius") -> str:
        self.calls.append(location)
        return RESULT


WEATHER_DESCRIPTION = "Get the current weather at a location"
PARAMETERS = WeatherArgs.model_json_schema()
WEATHER_SPEC = {"type": "function",
                "function": {"name": "get_weather", "description": WEATHER_DESCRIPTION, "parameters": PARAMETERS}}


def assert_has_refs(parameters: dict[str, Any]) -> None:
    text = json.dumps(parameters)
    assert "$defs" in parameters and '"$ref"' in text, f"the tool schema should nest by reference: {text}"


class Sent:
    """httpx event hooks that keep the JSON body of each chat request a library sends."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def record(self, request: httpx.Request) -> None:
        if request.url.path.endswith("/chat/completions"):
            self.bodies.append(json.loads(request.content))

    async def record_async(self, request: httpx.Request) -> None:
        self.record(request)

    def client(self) -> httpx.Client:
        return httpx.Client(event_hooks={"request": [self.record]}, timeout=300)

    def async_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(event_hooks={"request": [self.record_async]}, timeout=300)

    def assert_refs_sent(self) -> None:
        assert self.bodies, "no chat request was sent"
        for body in self.bodies:
            (tool,) = body["tools"]
            assert_has_refs(tool["function"]["parameters"])


def assert_answer(weather: WeatherTool, answer: Any) -> None:
    print(f"tool calls: {weather.calls}\nfinal answer: {answer!r}")  # shown by pytest -rA
    assert weather.calls, "the tool never ran"
    assert all(isinstance(c, Location) for c in weather.calls)
    assert any("paris" in c.city.lower() for c in weather.calls), weather.calls
    assert isinstance(answer, str) and answer.strip(), f"the final answer is not text: {answer!r}"
    assert EXPECTED in answer, f"the final answer does not state the tool's result ({RESULT!r}): {answer!r}"


@pytest.fixture(scope="module")
def base_url(llama_server: str) -> str:
    return f"{llama_server}/v1"


def test_parameters_nest_by_reference():
    assert_has_refs(PARAMETERS)


def test_openai_sdk_loop(base_url):
    sent = Sent()
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, http_client=sent.client())
    weather = WeatherTool()
    messages: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]
    for _ in range(MAX_TURNS):
        response = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_SPEC],
                                                  temperature=0, seed=SEED)
        choice = response.choices[0]
        message = choice.message
        if not message.tool_calls:
            assert choice.finish_reason == "stop", choice
            break
        assert choice.finish_reason == "tool_calls", choice
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            assert call.function.name == "get_weather"
            args = WeatherArgs.model_validate_json(call.function.arguments)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": weather(args.location, args.unit)})
    else:
        pytest.fail(f"no answer after {MAX_TURNS} turns: {json.dumps(messages)}")
    sent.assert_refs_sent()
    assert_answer(weather, message.content)


def test_openai_agents_sdk(base_url):
    from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)
    weather = WeatherTool()

    @function_tool
    def get_weather(location: Location, unit: Unit = "celsius") -> str:
        """Get the current weather at a location."""
        return weather(location, unit)

    sent = Sent()
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, http_client=sent.async_client())
    agent = Agent(name="assistant", tools=[get_weather],
                  model=OpenAIChatCompletionsModel(model=MODEL, openai_client=client),
                  model_settings=ModelSettings(temperature=0, extra_args={"seed": SEED}))
    # MaxTurnsExceeded if the loop does not end in time.
    result = asyncio.run(Runner.run(agent, QUESTION, max_turns=MAX_TURNS))
    sent.assert_refs_sent()
    assert_answer(weather, result.final_output)


def test_langchain(base_url):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    weather = WeatherTool()

    @tool(args_schema=WeatherArgs, description=WEATHER_DESCRIPTION)
    def get_weather(location: Location, unit: Unit = "celsius") -> str:
        return weather(location, unit)

    # LangChain inlines the references of a tool it converts itself (get_weather); a tool given
    # as an OpenAI dict goes out as is, $defs and all, which is the case that needs the server.
    sent = Sent()
    llm = ChatOpenAI(base_url=base_url, api_key="unused", model=MODEL, temperature=0, seed=SEED, max_retries=0,
                     http_client=sent.client())
    bound = llm.bind_tools([WEATHER_SPEC])
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
    sent.assert_refs_sent()
    assert_answer(weather, reply.content)


def test_pydantic_ai(base_url):
    from pydantic_ai import Agent
    from pydantic_ai.providers.openai import OpenAIProvider
    from pydantic_ai.usage import UsageLimits

    try:
        from pydantic_ai.models.openai import OpenAIChatModel
    except ImportError:  # releases before 1.0 name it OpenAIModel
        from pydantic_ai.models.openai import OpenAIModel as OpenAIChatModel

    weather = WeatherTool()
    sent = Sent()
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, http_client=sent.async_client())
    provider = OpenAIProvider(openai_client=client)
    agent = Agent(OpenAIChatModel(MODEL, provider=provider), model_settings={"temperature": 0, "seed": SEED})

    @agent.tool_plain
    def get_weather(location: Location, unit: Unit = "celsius") -> str:
        """Get the current weather at a location."""
        return weather(location, unit)

    # UsageLimitExceeded if the loop does not end in time.
    result = agent.run_sync(QUESTION, usage_limits=UsageLimits(request_limit=MAX_TURNS))
    sent.assert_refs_sent()
    assert_answer(weather, result.output)


# -- tools with structured output (issue 23): each library's agent ends with its output type ---------


class Forecast(BaseModel):
    """The structured answer: the agent's output type."""

    city: str
    temperature_celsius: int


def assert_forecast(weather: WeatherTool, output: Any) -> None:
    print(f"tool calls: {weather.calls}\nfinal output: {output!r}")  # shown by pytest -rA
    assert isinstance(output, Forecast), f"the agent did not end with its output type: {output!r}"


def responses_record(sent: Sent) -> httpx.AsyncClient:
    """An async client that keeps the bodies sent to /responses as ``Sent`` keeps chat's."""

    async def record(request: httpx.Request) -> None:
        if request.url.path.endswith("/responses"):
            sent.bodies.append(json.loads(request.content))

    return httpx.AsyncClient(event_hooks={"request": [record]}, timeout=300)


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_openai_agents_sdk_output_type(base_url, api):
    from agents import (
        Agent,
        ModelSettings,
        OpenAIChatCompletionsModel,
        OpenAIResponsesModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)
    weather = WeatherTool()

    @function_tool
    def get_weather(location: Location, unit: Unit = "celsius") -> str:
        """Get the current weather at a location."""
        return weather(location, unit)

    sent = Sent()
    http = sent.async_client() if api == "chat" else responses_record(sent)
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, http_client=http)
    model = (OpenAIChatCompletionsModel(model=MODEL, openai_client=client) if api == "chat"
             else OpenAIResponsesModel(model=MODEL, openai_client=client))
    agent = Agent(name="assistant", tools=[get_weather], output_type=Forecast, model=model,
                  model_settings=ModelSettings(temperature=0))
    result = asyncio.run(Runner.run(agent, QUESTION, max_turns=MAX_TURNS))  # MaxTurnsExceeded otherwise
    assert sent.bodies and all("tools" in b for b in sent.bodies)
    formats = [b.get("response_format") or b.get("text", {}).get("format") for b in sent.bodies]
    assert all(f and f["type"] == "json_schema" for f in formats), "tools and the output schema in one request"
    assert_forecast(weather, result.final_output)


def test_langchain_create_agent_provider_strategy(base_url):
    from langchain.agents import create_agent
    from langchain.agents.structured_output import ProviderStrategy
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    weather = WeatherTool()

    @tool(args_schema=WeatherArgs, description=WEATHER_DESCRIPTION)
    def get_weather(location: Location, unit: Unit = "celsius") -> str:
        return weather(location, unit)

    sent = Sent()
    llm = ChatOpenAI(base_url=base_url, api_key="unused", model=MODEL, temperature=0, seed=SEED, max_retries=0,
                     http_client=sent.client())
    agent = create_agent(llm, tools=[get_weather], response_format=ProviderStrategy(Forecast))
    # GraphRecursionError if the loop does not end in time (two steps per model turn).
    result = agent.invoke({"messages": [{"role": "user", "content": QUESTION}]},
                          {"recursion_limit": 2 * MAX_TURNS + 1})
    assert sent.bodies and all("tools" in b and "response_format" in b for b in sent.bodies)
    assert_forecast(weather, result["structured_response"])


def weather_answered() -> list[Any]:
    """pydantic-ai history in which get_weather was called and answered (the issue's reproduction)."""
    from pydantic_ai.messages import ModelRequest, ModelResponse, ToolCallPart, ToolReturnPart, UserPromptPart

    return [ModelRequest(parts=[UserPromptPart(QUESTION)]),
            ModelResponse(parts=[ToolCallPart("get_weather", {"location": {"city": "Paris", "country": "France"}},
                                              tool_call_id="c1")]),
            ModelRequest(parts=[ToolReturnPart("get_weather", RESULT, tool_call_id="c1")])]


@pytest.mark.parametrize("history", ["fresh", "weather answered"])
def test_pydantic_ai_output_type_with_tools(base_url, history):
    from pydantic_ai import Agent
    from pydantic_ai.providers.openai import OpenAIProvider

    try:
        from pydantic_ai.models.openai import OpenAIChatModel
    except ImportError:  # releases before 1.0 name it OpenAIModel
        from pydantic_ai.models.openai import OpenAIModel as OpenAIChatModel

    weather = WeatherTool()
    sent = Sent()
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, http_client=sent.async_client())
    agent = Agent(OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=client)), output_type=Forecast,
                  model_settings={"temperature": 0, "seed": SEED})

    @agent.tool_plain
    def get_weather(location: Location, unit: Unit = "celsius") -> str:
        """Get the current weather at a location."""
        return weather(location, unit)

    # Its default limits: UsageLimitExceeded after 50 requests.
    result = (agent.run_sync(QUESTION) if history == "fresh" else agent.run_sync(message_history=weather_answered()))
    # Its output is a tool (final_result), asked for under tool_choice "required": after an answered
    # get_weather the loop guard must lead there, not to 50 repeats of get_weather.
    assert all(b.get("tool_choice") == "required" for b in sent.bodies), [b.get("tool_choice") for b in sent.bodies]
    assert len(sent.bodies) <= MAX_TURNS, f"{len(sent.bodies)} requests"
    if history != "fresh":
        assert not weather.calls, f"the answered call was repeated: {weather.calls}"
    assert_forecast(weather, result.output)


def test_instructor_create_iterable(base_url):
    import instructor

    class User(BaseModel):
        name: str
        age: int

    sent = Sent()
    client = instructor.from_openai(openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0,
                                                  http_client=sent.client()), mode=instructor.Mode.TOOLS)
    users = list(client.chat.completions.create_iterable(
        model=MODEL, temperature=0, seed=SEED, response_model=User, max_retries=0,
        messages=[{"role": "user", "content": "Jason is 25. Sarah is 30."}]))
    print(f"users: {users}")
    (body,) = sent.bodies
    assert body["tool_choice"]["type"] == "function", "create_iterable names its tool"
    assert users and all(isinstance(u, User) for u in users), users
    assert 25 in [u.age for u in users], users
