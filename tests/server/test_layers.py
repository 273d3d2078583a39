"""Layers point down: backends raise backend-level errors, and serving alone maps them to HTTP."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hammer.server.app import create_app
from hammer.server.backends.base import EngineUnavailable, GenerationRequest, RequestRejected
from hammer.server.backends.fake import FakeBackend
from hammer.server.settings import Settings

BACKENDS = Path(__file__).resolve().parents[2] / "server" / "backends"
# Modules above the backend layer (HTTP shapes, request orchestration, tool constraints).
UPPER = ("hammer.server.constraints", "hammer.server.convert", "hammer.server.serving", "hammer.server.protocol",
         "hammer.server.app", "hammer.server.errors", "hammer.server.streaming", "hammer.server.responses",
         "hammer.server.messages", "hammer.server.sse")


def upward_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [(alias.name, "") for alias in node.names]
        else:
            continue
        found += [f"{module}.{name}" for module, name in names
                  if module.startswith(UPPER)]
    return found


@pytest.mark.parametrize("path", sorted(BACKENDS.glob("*.py")), ids=lambda p: p.name)
def test_backends_import_nothing_from_the_layers_above(path):
    assert upward_imports(path) == []


def test_the_import_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text("from hammer.server.errors import InvalidRequest\nimport hammer.server.serving\n")
    assert upward_imports(module) == ["hammer.server.errors.InvalidRequest", "hammer.server.serving."]


class RaisingBackend(FakeBackend):
    def __init__(self, settings: Settings, error: Exception) -> None:
        super().__init__(settings)
        self.error = error

    async def generate(self, request: GenerationRequest):
        raise self.error
        yield  # an async generator, as the real backends are


BODY = {"model": "fake", "messages": [{"role": "user", "content": "Hi"}]}


def post(error: Exception, **body) -> tuple[int, dict]:
    config = Settings(backend="fake")
    with TestClient(create_app(config, RaisingBackend(config, error)), raise_server_exceptions=False) as client:
        response = client.post("/v1/chat/completions", json={**BODY, **body})
    if body.get("stream"):
        events = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
        return response.status_code, json.loads(events[-2])
    return response.status_code, response.json()


class TestEngineErrorsMapped:
    def test_engine_unavailable_is_503(self):
        status, body = post(EngineUnavailable("the engine stopped", code="engine_dead"))
        assert status == 503
        assert body["error"] == {"message": "the engine stopped", "type": "server_error", "param": None,
                                 "code": "engine_dead"}

    def test_request_rejected_is_400(self):
        status, body = post(RequestRejected("vLLM rejected the request: prompt too long"))
        assert status == 400
        assert body["error"]["type"] == "invalid_request_error"
        assert body["error"]["message"] == "vLLM rejected the request: prompt too long"

    def test_mapped_in_band_when_streaming(self):
        status, event = post(EngineUnavailable("the engine stopped"), stream=True)
        assert status == 200  # the stream had started: the error is an event
        assert event["error"]["type"] == "server_error" and event["error"]["message"] == "the engine stopped"
