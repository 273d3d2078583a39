"""Request pool for the load test: the tools and queries an agent fleet sends, and the request builders.

Plain data and pure functions (no Locust import), so the tests can check every tool schema and every
request body without starting a load run. Each builder takes a ``random.Random`` and returns a
complete ``/v1/chat/completions`` body.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_MAX_TOKENS = 64


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties, "required": required,
                       "additionalProperties": False}}}


TOOLS: dict[str, dict[str, Any]] = {t["function"]["name"]: t for t in [
    _tool("get_weather", "Get the current weather for a city.",
          {"city": {"type": "string", "description": "City name, e.g. Paris"},
           "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"}},
          ["city"]),
    _tool("search_web", "Search the web and return the top results.",
          {"query": {"type": "string", "minLength": 1},
           "max_results": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5}},
          ["query"]),
    _tool("send_email", "Send an email to one or more recipients.",
          {"to": {"type": "array", "items": {"type": "string", "format": "email"}, "minItems": 1},
           "subject": {"type": "string"},
           "body": {"type": "string"},
           "cc": {"type": "array", "items": {"type": "string", "format": "email"}}},
          ["to", "subject", "body"]),
    _tool("create_calendar_event", "Create a calendar event.",
          {"title": {"type": "string"},
           "start": {"type": "string", "format": "date-time", "description": "ISO 8601 start time"},
           "duration_minutes": {"type": "integer", "minimum": 5, "maximum": 1440},
           "attendees": {"type": "array", "items": {"type": "string"}}},
          ["title", "start"]),
    _tool("convert_currency", "Convert an amount between two currencies.",
          {"amount": {"type": "number", "exclusiveMinimum": 0},
           "from_currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
           "to_currency": {"type": "string", "pattern": "^[A-Z]{3}$"}},
          ["amount", "from_currency", "to_currency"]),
    _tool("get_stock_price", "Get the latest price of a stock by ticker symbol.",
          {"ticker": {"type": "string", "description": "Ticker symbol, e.g. AAPL"}},
          ["ticker"]),
    _tool("translate_text", "Translate text into a target language.",
          {"text": {"type": "string"},
           "target_language": {"type": "string", "description": "ISO 639-1 code, e.g. de"},
           "source_language": {"type": ["string", "null"], "default": None}},
          ["text", "target_language"]),
    _tool("book_restaurant", "Reserve a table at a restaurant.",
          {"restaurant": {"type": "string"},
           "date": {"type": "string", "format": "date"},
           "time": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"},
           "party_size": {"type": "integer", "minimum": 1, "maximum": 20}},
          ["restaurant", "date", "time", "party_size"]),
    _tool("get_directions", "Get travel directions between two places.",
          {"origin": {"type": "string"},
           "destination": {"type": "string"},
           "mode": {"type": "string", "enum": ["driving", "walking", "transit", "cycling"]}},
          ["origin", "destination"]),
    _tool("create_ticket", "Open an issue in the support tracker.",
          {"title": {"type": "string", "maxLength": 200},
           "priority": {"type": "string", "enum": ["low", "medium", "high", "urgent"]},
           "labels": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
           "details": {"type": "object",
                       "properties": {"component": {"type": "string"}, "reproducible": {"type": "boolean"}}}},
          ["title", "priority"]),
]}

# One tool call expected: (query, the tool that fits).
SINGLE_QUERIES: list[tuple[str, str]] = [
    ("What's the weather like in Berlin right now?", "get_weather"),
    ("Is it raining in Seattle? Give me fahrenheit.", "get_weather"),
    ("Search the web for the latest Python release notes.", "search_web"),
    ("Find me three articles about solar panel efficiency.", "search_web"),
    ("Email alice@example.com that the report is ready, subject 'Q3 report'.", "send_email"),
    ("Schedule a 30 minute sync called 'Design review' tomorrow at 10:00.", "create_calendar_event"),
    ("How much is 250 US dollars in euros?", "convert_currency"),
    ("What is NVDA trading at?", "get_stock_price"),
    ("Translate 'where is the train station' into German.", "translate_text"),
    ("Book a table for 4 at Luigi's on 2025-06-14 at 19:30.", "book_restaurant"),
    ("How do I get from Times Square to Central Park on foot?", "get_directions"),
    ("Open a high priority ticket: login page returns 500.", "create_ticket"),
]

# Several independent calls in one turn: (query, the tools that fit).
PARALLEL_QUERIES: list[tuple[str, list[str]]] = [
    ("What's the weather in Tokyo and in London?", ["get_weather"]),
    ("Get me the prices of AAPL, MSFT and GOOG.", ["get_stock_price"]),
    ("Convert 100 EUR to USD and 100 EUR to JPY.", ["convert_currency"]),
    ("Check the weather in Rome and translate 'good morning' into Italian.", ["get_weather", "translate_text"]),
    ("Look up TSLA's price and search the web for Tesla news.", ["get_stock_price", "search_web"]),
    ("Get driving directions from Boston to NYC and the weather in NYC.", ["get_directions", "get_weather"]),
]

# No declared tool fits: the right answer is a refusal (no tool call).
IRRELEVANT_QUERIES: list[str] = [
    "Write a haiku about autumn leaves.",
    "What is the capital of Australia?",
    "Explain the difference between TCP and UDP in one sentence.",
    "Tell me a joke about programmers.",
    "What's 17 times 23?",
]

# Plain chat: no tools at all.
CHAT_QUERIES: list[str] = [
    "Hi! Can you help me plan my week?",
    "Summarize the plot of Romeo and Juliet in two sentences.",
    "Give me three tips for writing clean code.",
    "What does an API gateway do?",
]

# Multi-turn: the user asked, the assistant called a tool, the tool answered; the model now continues.
MULTI_TURN: list[dict[str, Any]] = [
    {"query": "What's the weather in Paris?", "tool": "get_weather",
     "arguments": {"city": "Paris"}, "result": {"temperature": 18, "unit": "celsius", "condition": "cloudy"}},
    {"query": "How much is 50 GBP in USD?", "tool": "convert_currency",
     "arguments": {"amount": 50, "from_currency": "GBP", "to_currency": "USD"}, "result": {"converted": 63.4}},
    {"query": "What's AMZN at?", "tool": "get_stock_price",
     "arguments": {"ticker": "AMZN"}, "result": {"ticker": "AMZN", "price": 187.12, "currency": "USD"}},
    {"query": "Book Luigi's for 2 on 2025-07-01 at 20:00.", "tool": "book_restaurant",
     "arguments": {"restaurant": "Luigi's", "date": "2025-07-01", "time": "20:00", "party_size": 2},
     "result": {"confirmed": True, "reservation_id": "R-5521"}},
]

SYSTEM_PROMPT = "You are a helpful assistant with access to tools."


def _tools_for(rng: random.Random, needed: list[str], extra: int = 3) -> list[dict[str, Any]]:
    """The needed tools plus a few random distractors, shuffled (agents declare more tools than they use)."""
    others = [name for name in TOOLS if name not in needed]
    names = list(dict.fromkeys(needed)) + rng.sample(others, min(extra, len(others)))
    rng.shuffle(names)
    return [TOOLS[name] for name in names]


def _body(model: str, max_tokens: int, messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0.0, **extra}


def build_single(rng: random.Random, model: str = DEFAULT_MODEL, max_tokens: int = DEFAULT_MAX_TOKENS) -> dict:
    query, tool = rng.choice(SINGLE_QUERIES)
    return _body(model, max_tokens, [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": query}],
                 tools=_tools_for(rng, [tool]), tool_choice="auto")


def build_parallel(rng: random.Random, model: str = DEFAULT_MODEL, max_tokens: int = DEFAULT_MAX_TOKENS) -> dict:
    query, tools = rng.choice(PARALLEL_QUERIES)
    return _body(model, max_tokens, [{"role": "user", "content": query}],
                 tools=_tools_for(rng, tools), tool_choice="auto", parallel_tool_calls=True)


def build_irrelevant(rng: random.Random, model: str = DEFAULT_MODEL, max_tokens: int = DEFAULT_MAX_TOKENS) -> dict:
    query = rng.choice(IRRELEVANT_QUERIES)
    return _body(model, max_tokens, [{"role": "user", "content": query}], tools=_tools_for(rng, [], extra=4))


def build_multi_turn(rng: random.Random, model: str = DEFAULT_MODEL, max_tokens: int = DEFAULT_MAX_TOKENS) -> dict:
    turn = rng.choice(MULTI_TURN)
    call_id = f"call_{rng.randrange(16 ** 8):08x}"
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": turn["query"]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function",
             "function": {"name": turn["tool"], "arguments": json.dumps(turn["arguments"])}}]},
        {"role": "tool", "tool_call_id": call_id, "content": json.dumps(turn["result"])},
    ]
    return _body(model, max_tokens, messages, tools=_tools_for(rng, [turn["tool"]]))


def build_stream_tool_call(rng: random.Random, model: str = DEFAULT_MODEL,
                           max_tokens: int = DEFAULT_MAX_TOKENS) -> dict:
    body = build_single(rng, model, max_tokens)
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    return body


def build_chat(rng: random.Random, model: str = DEFAULT_MODEL, max_tokens: int = DEFAULT_MAX_TOKENS) -> dict:
    return _body(model, max_tokens, [{"role": "user", "content": rng.choice(CHAT_QUERIES)}])


# name -> (builder, Locust task weight). The mix leans on tool calls, as an agent fleet's traffic does.
SCENARIOS: dict[str, tuple[Callable[..., dict[str, Any]], int]] = {
    "single_tool_call": (build_single, 30),
    "parallel_tool_calls": (build_parallel, 15),
    "irrelevant_refusal": (build_irrelevant, 10),
    "multi_turn_tool_result": (build_multi_turn, 20),
    "stream_tool_call": (build_stream_tool_call, 15),
    "plain_chat": (build_chat, 10),
}
