"""The real ``hammer serve`` (llama.cpp, --parallel 4, flash attention off) with the OpenAI SDK: concurrent
clients, streaming or not, get what they get one at a time; a client that leaves disturbs nobody;
/metrics shows the prefix cache at work."""

from __future__ import annotations

import concurrent.futures
import re
import time
from typing import Any, Iterator

import httpx
import openai
import pytest
from hammer.server.settings import EMBEDDED_NAME

from tests.conftest import running_server
from tests.server.tools_fixtures import TOOLS, user

pytestmark = pytest.mark.slow

STOCK = {"type": "function", "function": {
    "name": "get_stock_price", "description": "Latest price of a stock by its ticker symbol",
    "parameters": {"type": "object", "properties": {"ticker": {"type": "string"}}, "required": ["ticker"]}}}

# (tools, question, streamed): two tool sets, streaming and not, and tool_choice required.
CASES = [(TOOLS, "What's the weather like in Paris?", False),
         ([STOCK], "Get the stock price for the ticker IBM.", True),
         (TOOLS, "Is it raining in Tokyo?", True),
         ([STOCK], "How much is one share of MSFT?", False),
         (TOOLS, "Send an email to ann@example.com with the subject Report and the body Done.", False),
         ([STOCK], "What does a share of TSLA cost?", True)]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("batching") / "server.log"
    # Without flash attention the embedded model decodes a sequence alone and in a batch bit-identically
    # (docs/llamacpp.md), so any difference below is a scheduling bug, not rounding.
    with running_server("--parallel", "4", "--cache-tokens", "4096", "--no-flash-attn", log_path=log) as url:
        yield url


def ask(url: str, tools: list[dict[str, Any]], question: str, streamed: bool) -> list[tuple[str, str]]:
    """The calls the server returns, as (name, arguments JSON)."""
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300)
    kwargs: dict[str, Any] = {"model": EMBEDDED_NAME, "messages": user(question), "tools": tools,
                              "tool_choice": "required", "temperature": 0, "max_tokens": 200}
    if not streamed:
        message = client.chat.completions.create(**kwargs).choices[0].message
        return [(c.function.name, c.function.arguments) for c in message.tool_calls or []]
    calls: dict[int, list[str]] = {}
    for chunk in client.chat.completions.create(**kwargs, stream=True):
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            entry = calls.setdefault(delta.index, ["", ""])
            if delta.function is not None:
                entry[0] += delta.function.name or ""
                entry[1] += delta.function.arguments or ""
    return [(name, arguments) for name, arguments in (calls[i] for i in sorted(calls))]


def metric(url: str, name: str) -> float:
    found = re.search(rf"^{name} ([0-9.e+]+)$", httpx.get(f"{url}/metrics").text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def test_concurrent_clients_get_what_they_get_one_at_a_time(url):
    for case in CASES:  # both tool sets' prompts cached, as the runs below then find them
        ask(url, *case)
    alone = [ask(url, *case) for case in CASES]
    with concurrent.futures.ThreadPoolExecutor(len(CASES)) as pool:
        together = list(pool.map(lambda case: ask(url, *case), CASES))
    assert together == alone
    assert all(calls for calls in alone)
    assert [calls[0][0] for calls in alone][:4] == ["get_weather", "get_stock_price", "get_weather",
                                                    "get_stock_price"]


def test_the_prefix_cache_is_in_metrics(url):
    hits, reused = metric(url, "hammer_prefix_cache_hits_total"), metric(url, "hammer_prefix_cache_reused_tokens_total")
    ask(url, *CASES[0])
    assert metric(url, "hammer_prefix_cache_hits_total") == hits + 1
    assert metric(url, "hammer_prefix_cache_reused_tokens_total") - reused > 300  # the tool prompt, not evaluated
    assert 0 < metric(url, "hammer_prefix_cache_tokens") <= 4096


def test_a_client_that_leaves_disturbs_nobody(url):
    expected = ask(url, *CASES[1])
    story = {"model": EMBEDDED_NAME, "messages": user("Write a very long story about a dragon."), "max_tokens": 1500,
             "temperature": 0, "stream": True}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=story, timeout=300) as leaving:
            lines = leaving.iter_lines()
            next(lines)  # generating
            other = pool.submit(ask, url, *CASES[1])
            time.sleep(0.5)
        assert other.result() == expected  # the stream closed mid-way: its neighbour is unaffected
    deadline = time.monotonic() + 10
    while metric(url, "hammer_running_generations") != 0:
        assert time.monotonic() < deadline, "the departed client's generation still runs"
        time.sleep(0.1)
