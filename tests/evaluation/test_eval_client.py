"""Transient errors are retried, a hang is cut by the timeout, and every failure stays an error."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest
from hammer.evaluation.client import Endpoint, api_base, complete, make_client

from tests.evaluation.fake_endpoint import JSONHandler

pytest.importorskip("openai")

COMPLETION = {"id": "c", "object": "chat.completion", "created": 0, "model": "m", "choices": [{
    "index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_0", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]}}]}


def error(message: str) -> dict:
    return {"error": {"message": message, "type": "server_error", "param": None, "code": None}}


class Handler(JSONHandler):
    server: QuietServer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        mode = self.path.split("/")[1]
        hits = self.server.hits
        hits[mode] = hits.get(mode, 0) + 1
        if mode == "hang":
            time.sleep(3)
        if mode == "flaky" and hits[mode] == 1 or mode == "down":
            return self.send_json(503, error("busy"))
        if mode == "broken":
            return self.send_json(500, error("boom"))
        self.send_json(200, COMPLETION)



class QuietServer(ThreadingHTTPServer):
    """Counts requests per mode (the first path segment)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.hits: dict[str, int] = {}

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the hang case writes to a client that already gave up


@pytest.fixture
def fake_server() -> Iterator[QuietServer]:
    server = QuietServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def call(server: QuietServer, mode: str, timeout_s: float = 10, retries: int = 2):
    url = f"http://127.0.0.1:{server.server_address[1]}/{mode}"
    client = make_client(Endpoint("t", url, "m"), timeout_s)
    return complete(client, "m", [{"role": "user", "content": "hi"}], [], 16, retries, backoff_s=0.01)


def test_api_base_adds_v1_once():
    assert api_base("http://h:1") == api_base("http://h:1/v1/") == "http://h:1/v1"


def test_success_returns_the_calls(fake_server):
    reply = call(fake_server, "ok")
    assert reply.error is None and reply.tool_calls == [{"name": "f", "arguments": '{"a": 1}'}]
    assert reply.finish_reason == "tool_calls" and reply.attempts == 1


def test_a_503_is_retried(fake_server):
    reply = call(fake_server, "flaky")
    assert reply.error is None and reply.attempts == 2 and fake_server.hits["flaky"] == 2


def test_retries_run_out_into_an_error(fake_server):
    reply = call(fake_server, "down", retries=1)
    assert reply.error.startswith("HTTP 503") and reply.attempts == 2 and not reply.tool_calls


def test_a_500_is_not_retried(fake_server):
    reply = call(fake_server, "broken")
    assert reply.error == "HTTP 500: boom" and fake_server.hits["broken"] == 1


def test_a_hang_is_cut_by_the_timeout_and_not_retried(fake_server):
    start = time.monotonic()
    reply = call(fake_server, "hang", timeout_s=0.5)
    assert reply.error == "timeout" and reply.attempts == 1 and time.monotonic() - start < 2.5
