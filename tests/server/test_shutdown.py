"""Graceful shutdown with a request in flight, on the real server."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.conftest import free_port
from tests.server.tools_fixtures import TOOLS, user

pytestmark = pytest.mark.slow

# A completion the grammar keeps going for hundreds of tokens (the model cannot end it early).
LONG = {"model": "smollm2-135m-instruct", "messages": user("List many words."), "max_tokens": 3000,
        "response_format": {"type": "json_schema", "json_schema": {"name": "words", "schema": {
            "type": "array", "items": {"type": "string"}, "minItems": 300}}}}


def start(port: int, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--port", str(port), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise TimeoutError("server did not start")


class TestGracefulShutdown:
    def test_in_flight_request_finishes_then_process_exits(self):
        port = free_port()
        proc = start(port, "--shutdown-timeout", "60")
        result: dict = {}

        def request() -> None:
            body = {"model": "smollm2-135m-instruct", "messages": user("What's the weather like in Paris?"),
                    "tools": TOOLS, "temperature": 0}
            result["response"] = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=120)

        worker = threading.Thread(target=request)
        worker.start()
        time.sleep(0.5)  # the request is being processed
        proc.send_signal(signal.SIGTERM)
        worker.join(timeout=120)
        # uvicorn re-raises the signal after a graceful shutdown, so the exit status is SIGTERM's.
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
        response = result["response"]
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["tool_calls"]

    def test_deadline_cancels_a_long_generation(self):
        port = free_port()
        proc = start(port, "--shutdown-timeout", "1")
        body = {**LONG, "stream": True}
        with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=60) as stream:
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
        port = free_port()
        proc = start(port, "--shutdown-timeout", "2")
        result: dict = {}

        def request() -> None:
            result["response"] = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=LONG, timeout=120)

        worker = threading.Thread(target=request)
        worker.start()
        time.sleep(1.0)  # generating
        proc.send_signal(signal.SIGTERM)
        worker.join(timeout=60)
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        response = result["response"]
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "server_shutting_down"
