"""Locust load test of a Hammer server's /v1/chat/completions: the weighted mix of an agent fleet.

Scenarios (see ``scenarios.py``): a single tool call, parallel calls, an irrelevant query (refusal),
a multi-turn exchange with tool results, a streamed tool call and plain chat. Each is reported under
its own name. Extra rows:

* Type ``TTFT``, name ``stream_tool_call``: time to first token of the streamed scenario, i.e. from sending the
  request to the first SSE chunk that carries output (content text, a tool-call delta or, for an
  empty answer, the finish chunk), not the opening ``role`` chunk.
* Type ``REJECTED``, name ``429 <scenario>``: requests the server rejected because its queue was full (``--max-queue``).
  They are deliberate back-pressure, so they are recorded as successes in their own row: the
  failure count holds only real errors (bad status, bad shape, timeouts, broken streams).

Environment: OPENAI_API_KEY (sent as a Bearer token when set), HAMMER_MODEL_NAME (default
smollm2-135m-instruct), LOADTEST_MAX_TOKENS (default 64), LOADTEST_TIMEOUT (seconds, default 300).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from locust import HttpUser, between, events, task

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scenarios
from checks import check_completion, check_stream, has_output

MODEL = os.environ.get("HAMMER_MODEL_NAME") or scenarios.DEFAULT_MODEL
MAX_TOKENS = int(os.environ.get("LOADTEST_MAX_TOKENS") or scenarios.DEFAULT_MAX_TOKENS)
TIMEOUT = float(os.environ.get("LOADTEST_TIMEOUT") or 300)
API_KEY = os.environ.get("OPENAI_API_KEY")
PATH = "/v1/chat/completions"


class AgentUser(HttpUser):
    """One agent: sends the weighted scenario mix back to back with a short think time."""

    wait_time = between(0.05, 0.25)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.client.headers["Content-Type"] = "application/json"
        if API_KEY:
            self.client.headers["Authorization"] = f"Bearer {API_KEY}"

    def _body(self, scenario: str) -> dict[str, Any]:
        builder, _ = scenarios.SCENARIOS[scenario]
        return builder(self.rng, MODEL, MAX_TOKENS)

    @staticmethod
    def _rejected(response: Any, scenario: str) -> bool:
        """A 429 is moved to its own row and counted as a (deliberate) rejection, not a failure."""
        if response.status_code != 429:
            return False
        response.request_meta["name"] = f"429 {scenario}"
        response.request_meta["request_type"] = "REJECTED"
        response.success()
        return True

    def _post(self, scenario: str) -> None:
        body = self._body(scenario)
        tool_names = {t["function"]["name"] for t in body.get("tools") or []}
        with self.client.post(PATH, json=body, name=scenario, catch_response=True, timeout=TIMEOUT) as response:
            if self._rejected(response, scenario):
                return
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            try:
                error = check_completion(response.json(), tool_names)
            except ValueError:
                error = "response is not JSON"
            if error:
                response.failure(error)
            else:
                response.success()

    @task(scenarios.SCENARIOS["single_tool_call"][1])
    def single_tool_call(self) -> None:
        self._post("single_tool_call")

    @task(scenarios.SCENARIOS["parallel_tool_calls"][1])
    def parallel_tool_calls(self) -> None:
        self._post("parallel_tool_calls")

    @task(scenarios.SCENARIOS["irrelevant_refusal"][1])
    def irrelevant_refusal(self) -> None:
        self._post("irrelevant_refusal")

    @task(scenarios.SCENARIOS["multi_turn_tool_result"][1])
    def multi_turn_tool_result(self) -> None:
        self._post("multi_turn_tool_result")

    @task(scenarios.SCENARIOS["plain_chat"][1])
    def plain_chat(self) -> None:
        self._post("plain_chat")

    @task(scenarios.SCENARIOS["stream_tool_call"][1])
    def stream_tool_call(self) -> None:
        scenario = "stream_tool_call"
        body = self._body(scenario)
        tool_names = {t["function"]["name"] for t in body.get("tools") or []}
        start = time.perf_counter()
        with self.client.post(PATH, json=body, name=scenario, catch_response=True, stream=True,
                              timeout=TIMEOUT) as response:
            if self._rejected(response, scenario):
                return
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            chunks: list[dict[str, Any]] = []
            ttft_ms: float | None = None
            done = False
            length = 0
            try:
                for line in response.iter_lines(decode_unicode=True):
                    if not line or not line.startswith("data:"):
                        continue
                    length += len(line)
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        done = True
                        break
                    chunk = json.loads(payload)
                    chunks.append(chunk)
                    if ttft_ms is None and has_output(chunk):
                        ttft_ms = (time.perf_counter() - start) * 1000
            except Exception as exc:  # noqa: BLE001 - a broken stream is a failure of this request
                response.failure(f"stream broke: {exc!r}")
                return
            # The row's time is the whole stream, not just the headers Locust timed.
            response.request_meta["response_time"] = (time.perf_counter() - start) * 1000
            response.request_meta["response_length"] = length
            error = None if done else "stream ended without [DONE]"
            error = error or check_stream(chunks, tool_names)
            if error:
                response.failure(error)
                return
            response.success()
        if ttft_ms is not None:
            events.request.fire(request_type="TTFT", name=scenario, response_time=ttft_ms, response_length=0,
                                exception=None, context={})


# Exact per-run summary (Locust's "Aggregated" row mixes the TTFT measurements in with the requests and
# its percentiles are rounded): all POST and TTFT times, written next to the CSV as <prefix>_summary.json.
_times: dict[str, list[float]] = {"POST": [], "TTFT": []}
_counts = {"failures": 0, "rejected_429": 0}
_clock: dict[str, float] = {}


@events.test_start.add_listener
def _on_test_start(**_: Any) -> None:
    _clock["start"] = time.perf_counter()


@events.request.add_listener
def _on_request(request_type: str, response_time: float, exception: Any = None, **_: Any) -> None:
    if exception is not None:
        _counts["failures"] += 1
    elif request_type == "REJECTED":
        _counts["rejected_429"] += 1
    elif request_type in _times:
        _times[request_type].append(response_time)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)  # nearest rank, ms


@events.quitting.add_listener
def _write_summary(environment: Any, **_: Any) -> None:
    prefix = getattr(environment.parsed_options, "csv_prefix", None) if environment.parsed_options else None
    if not prefix:
        return
    elapsed = time.perf_counter() - _clock.get("start", time.perf_counter())
    posts, ttft = _times["POST"], _times["TTFT"]
    summary = {"users": environment.parsed_options.num_users, "elapsed_s": round(elapsed, 1),
               "requests_ok": len(posts), "requests_per_s": round(len(posts) / elapsed, 3) if elapsed else None,
               "p50_ms": _percentile(posts, 0.50), "p99_ms": _percentile(posts, 0.99),
               "ttft_count": len(ttft), "ttft_p50_ms": _percentile(ttft, 0.50), "ttft_p99_ms": _percentile(ttft, 0.99),
               **_counts}
    Path(f"{prefix}_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
