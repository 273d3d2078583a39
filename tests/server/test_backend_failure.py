"""A failure inside the real llama.cpp backend answers 503 and the server recovers without a restart.

The server runs in this process (uvicorn in a thread) on the embedded model so the test can make
llama.cpp's ``llama_decode`` fail mid-generation.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Iterator

import httpx
import pytest
import uvicorn
from hammer.server.app import create_app
from hammer.server.backends.llamacpp import LlamaCppBackend
from hammer.server.settings import EMBEDDED_NAME, Settings

from tests.conftest import free_port
from tests.server.tools_fixtures import TOOLS, user

pytestmark = pytest.mark.slow

BODY = {"model": EMBEDDED_NAME, "messages": user("What's the weather like in Paris?"), "tools": TOOLS,
        "temperature": 0}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, LlamaCppBackend]]:
    settings = Settings(port=free_port(), n_ctx=2048)
    backend = LlamaCppBackend(settings)
    server = uvicorn.Server(uvicorn.Config(create_app(settings, backend), host="127.0.0.1", port=settings.port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 300
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.2)
    yield f"http://127.0.0.1:{settings.port}", backend
    server.should_exit = True
    thread.join(timeout=60)


@pytest.fixture
def decode_fails_after(served, monkeypatch):
    """Make the engine's ``llama_decode`` fail as a compute error does, from its ``n``-th call after
    arming on (0: the prompt's first chunk); an instance attribute, undone after the test."""
    engine = served[1].engine
    original = engine._decode

    def arm(n: int) -> None:
        calls = 0

        def decode(batch):
            nonlocal calls
            calls += 1
            return -3 if calls > n else original(batch)

        monkeypatch.setattr(engine, "_decode", decode)

    arm.disarm = lambda: monkeypatch.setattr(engine, "_decode", original)  # type: ignore[attr-defined]
    return arm


def assert_recovered(url: str) -> None:
    response = httpx.post(f"{url}/v1/chat/completions", json=BODY, timeout=300)
    assert response.status_code == 200, response.text
    calls = response.json()["choices"][0]["message"]["tool_calls"]
    assert calls and calls[0]["function"]["name"] == "get_weather"
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}


class TestBackendFailure:
    def test_non_streaming_failure_is_503_then_recovery(self, served, decode_fails_after):
        url, _ = served
        decode_fails_after(5)
        response = httpx.post(f"{url}/v1/chat/completions", json=BODY, timeout=300)
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["type"] == "server_error" and "llama_decode returned -3" in error["message"]
        decode_fails_after.disarm()
        assert_recovered(url)
        metrics = httpx.get(f"{url}/metrics").text
        assert 'hammer_requests_total{route="/v1/chat/completions",status="503"} 1.0' in metrics
        assert "hammer_running_generations 0.0" in metrics

    def test_streaming_failure_is_reported_in_band_then_recovery(self, served, decode_fails_after):
        url, _ = served
        decode_fails_after(5)
        with httpx.stream("POST", f"{url}/v1/chat/completions", json={**BODY, "stream": True}, timeout=300) as r:
            events = [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]
        assert r.status_code == 200  # the stream had started: the error comes as an event, then [DONE]
        assert events[-1] == "[DONE]"
        error = json.loads(events[-2])["error"]
        assert error["type"] == "server_error" and "llama_decode returned -3" in error["message"]
        assert not any("tool_calls" in e for e in events), "no call from a failed generation is sent"
        decode_fails_after.disarm()
        assert_recovered(url)

    def test_failure_at_the_first_token_then_recovery(self, served, decode_fails_after):
        url, _ = served
        decode_fails_after(0)
        assert httpx.post(f"{url}/v1/chat/completions", json=BODY, timeout=300).status_code == 503
        decode_fails_after.disarm()
        assert_recovered(url)
