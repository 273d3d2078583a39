"""Graceful shutdown with a request in flight, on the real server."""

from __future__ import annotations

import concurrent.futures
import signal
import time

import httpx
import pytest

from tests.conftest import served
from tests.server.tools_fixtures import TOOLS, user

pytestmark = pytest.mark.slow

# A completion the grammar keeps going for hundreds of tokens (the model cannot end it early); the
# servers allow such arrays with --max-array-items (the default caps generated arrays at 64 items).
LONG_ARRAYS = ("--max-array-items", "300")
LONG = {"model": "smollm2-135m-instruct", "messages": user("List many words."), "max_tokens": 3000,
        "response_format": {"type": "json_schema", "json_schema": {"name": "words", "schema": {
            "type": "array", "items": {"type": "string"}, "minItems": 300}}}}


def answer_across_sigterm(*args: str, body: dict, after_s: float) -> httpx.Response:
    """Post ``body`` to ``hammer serve ARGS``, SIGTERM it ``after_s`` later; the answer, once the server exited."""
    with served(*args) as (proc, url), concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(httpx.post, f"{url}/v1/chat/completions", json=body, timeout=120)
        time.sleep(after_s)
        proc.send_signal(signal.SIGTERM)
        response = pending.result(timeout=120)
        # uvicorn re-raises the signal after a graceful shutdown, so the exit status is SIGTERM's.
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    return response


class TestGracefulShutdown:
    def test_in_flight_request_finishes_then_process_exits(self):
        body = {"model": "smollm2-135m-instruct", "messages": user("What's the weather like in Paris?"),
                "tools": TOOLS, "temperature": 0}
        # SIGTERM while the request is being processed
        response = answer_across_sigterm("--shutdown-timeout", "60", *LONG_ARRAYS, body=body, after_s=0.5)
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["tool_calls"]

    def test_deadline_cancels_a_long_generation(self):
        with served("--shutdown-timeout", "1", *LONG_ARRAYS) as (proc, url), \
                httpx.stream("POST", f"{url}/v1/chat/completions", json={**LONG, "stream": True}, timeout=60) as stream:
            lines = stream.iter_lines()
            next(lines)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            events = [line for line in lines if line.startswith("data: ")]  # until the server ends the stream
            assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 15
        # The client learns why its answer stopped, and the stream ends properly.
        assert events[-1] == "data: [DONE]" and '"code":"server_shutting_down"' in events[-2], events[-3:]

    def test_deadline_answers_a_waiting_non_streamed_request_with_503(self):
        response = answer_across_sigterm("--shutdown-timeout", "2", *LONG_ARRAYS, body=LONG, after_s=1.0)  # generating
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "server_shutting_down"


class TestForcedQuit:
    def test_a_second_ctrl_c_says_so_in_one_line_each(self, tmp_path):
        log = tmp_path / "server.log"
        story = {"model": "smollm2-135m-instruct", "messages": user("Write a very long story about a dragon."),
                 "max_tokens": 2000, "stream": True}
        with served(log_path=log) as (proc, url), \
                httpx.stream("POST", f"{url}/v1/chat/completions", json=story, timeout=60) as stream:
            lines = stream.iter_lines()
            for _ in range(6):  # generating
                next(lines)
            proc.send_signal(signal.SIGINT)  # graceful: waits for the stream
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)  # forced
            proc.wait(timeout=30)
        text = log.read_text()
        assert "Traceback" not in text and "CancelledError" not in text, text[-2000:]
        assert "forced to quit: a request still running was cancelled" in text
