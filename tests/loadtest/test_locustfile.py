"""The load test's request pool is valid, and a short headless Locust run against the real server passes."""

from __future__ import annotations

import csv
import os
import random
import shutil
import subprocess
from pathlib import Path

import checks  # loadtest/, on the path by pytest's pythonpath (pyproject.toml)
import jsonschema
import pytest
import scenarios
from hammer.server.constraints import plan_tools
from hammer.server.protocol import ChatCompletionRequest
from hammer.server.settings import EMBEDDED_NAME, Settings

from tests.conftest import REPO, running_server

LOADTEST = REPO / "loadtest"

QUERY_POOL = (len(scenarios.SINGLE_QUERIES) + len(scenarios.PARALLEL_QUERIES) + len(scenarios.IRRELEVANT_QUERIES)
              + len(scenarios.CHAT_QUERIES) + len(scenarios.MULTI_TURN))


def test_pool_is_realistic_size() -> None:
    assert len(scenarios.TOOLS) >= 10
    assert QUERY_POOL >= 30
    assert set(scenarios.SCENARIOS) == {"single_tool_call", "parallel_tool_calls", "irrelevant_refusal",
                                        "multi_turn_tool_result", "stream_tool_call", "plain_chat"}


@pytest.mark.parametrize("name", sorted(scenarios.TOOLS))
def test_tool_schema_is_valid_json_schema(name: str) -> None:
    tool = scenarios.TOOLS[name]
    assert tool["function"]["name"] == name
    jsonschema.Draft202012Validator.check_schema(tool["function"]["parameters"])


def test_queries_name_declared_tools() -> None:
    named = [t for _, t in scenarios.SINGLE_QUERIES] + [t for _, ts in scenarios.PARALLEL_QUERIES for t in ts]
    named += [turn["tool"] for turn in scenarios.MULTI_TURN]
    assert set(named) <= set(scenarios.TOOLS)
    for turn in scenarios.MULTI_TURN:  # the recorded call is one the tool's schema accepts
        jsonschema.validate(turn["arguments"], scenarios.TOOLS[turn["tool"]]["function"]["parameters"])


@pytest.mark.parametrize("scenario", sorted(scenarios.SCENARIOS))
def test_every_scenario_builds_an_accepted_request(scenario: str) -> None:
    builder, weight = scenarios.SCENARIOS[scenario]
    assert weight > 0
    settings = Settings()
    rng = random.Random(0)
    for _ in range(50):  # many draws: every query and tool combination the builder can make
        body = builder(rng, EMBEDDED_NAME, 64)
        request = ChatCompletionRequest.model_validate(body)
        assert request.model == EMBEDDED_NAME and request.max_tokens == 64
        assert request.stream is (scenario == "stream_tool_call")
        plan = plan_tools(request.tools, request.tool_choice, request.parallel_tool_calls,
                          settings.max_tools, settings.schema_limits())
        assert bool(plan.functions) is (scenario != "plain_chat")


def test_locustfile_response_checks() -> None:
    ok = {"object": "chat.completion", "usage": {"total_tokens": 3}, "choices": [{
        "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "X"}'}}]}}]}
    assert checks.check_completion(ok, {"get_weather"}) is None
    assert "undeclared" in checks.check_completion(ok, {"search_web"})
    assert checks.check_completion({"error": {}}, set()) is not None
    chunks = [{"object": "chat.completion.chunk", "choices": [{"delta": {"role": "assistant", "content": ""}}]},
              {"object": "chat.completion.chunk", "choices": [{"delta": {"tool_calls": [
                  {"index": 0, "id": "c", "type": "function",
                   "function": {"name": "get_weather", "arguments": ""}}]}}]},
              {"object": "chat.completion.chunk", "choices": [{"delta": {"tool_calls": [
                  {"index": 0, "function": {"arguments": '{"city": "X"}'}}]}}]},
              {"object": "chat.completion.chunk", "choices": [{"delta": {}, "finish_reason": "tool_calls"}]}]
    assert checks.check_stream(chunks, {"get_weather"}) is None
    assert checks.check_stream(chunks[:-1], {"get_weather"}) is not None
    assert not checks.has_output(chunks[0]) and checks.has_output(chunks[1])


@pytest.mark.slow
def test_headless_locust_run_has_no_failures(tmp_path: Path) -> None:
    locust = shutil.which("locust")
    if locust is None:
        pytest.skip("locust is not installed")
    with running_server("--n-threads", "1", log_path=tmp_path / "server.log") as url:
        result = subprocess.run(
            ["bash", str(LOADTEST / "run.sh"), url, "4", "15s", str(tmp_path / "out")],
            env={**os.environ, "LOCUST": locust, "LOADTEST_STOP_TIMEOUT": "120"},
            capture_output=True, text=True, timeout=400, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (tmp_path / "out" / "report.html").stat().st_size > 0
    with open(tmp_path / "out" / "locust_stats.csv", newline="") as f:
        rows = {(r["Type"], r["Name"]): r for r in csv.DictReader(f)}
    total = rows[("", "Aggregated")]
    failures = sum(int(r["Failure Count"]) for r in rows.values() if r["Name"] != "Aggregated")
    assert failures == 0, (tmp_path / "out" / "locust_failures.csv").read_text()
    assert int(total["Failure Count"]) == 0
    assert int(total["Request Count"]) > 0
