"""Limits, the wait-queue bound, disconnects in the queue, the metrics port and key hygiene, on the real server."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest
from hammer.server.settings import EMBEDDED_NAME

from tests.conftest import free_port, running_server
from tests.server.tools_fixtures import TOOLS, WEATHER, user

pytestmark = pytest.mark.slow

CHAT = "/v1/chat/completions"


def body(**extra) -> dict:
    return {"model": EMBEDDED_NAME, "messages": user("What's the weather like in Paris?"), "tools": TOOLS,
            "temperature": 0, **extra}


def nested(depth: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


class TestLimits:
    @pytest.fixture(scope="class")
    def url(self, tmp_path_factory):
        with running_server("--max-body-bytes", "4096", "--max-tools", "2", "--max-schema-depth", "4",
                            "--max-messages", "3", "--n-ctx", "1024",
                            log_path=tmp_path_factory.mktemp("limits") / "server.log") as url:
            yield url

    @pytest.mark.parametrize("request_body,param,code", [
        (body(messages=user("x" * 5000)), None, "request_too_large"),
        (body(tools=[WEATHER] * 3), "tools", None),
        (body(tools=[{"type": "function", "function": {"name": "deep", "parameters": nested(5)}}]),
         "tools[0].function.parameters", "unsupported_schema"),
        (body(messages=user("hi") * 4), "messages", None),
        (body(max_tokens=2000), "max_tokens", "context_length_exceeded"),
    ], ids=["body-size", "tool-count", "schema-depth", "message-count", "max-tokens-vs-context"])
    def test_each_limit_is_a_clear_400(self, url, request_body, param, code):
        response = httpx.post(f"{url}{CHAT}", json=request_body, timeout=60)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == param and error["code"] == code
        assert error["message"]

    def test_within_the_limits_is_served(self, url):
        response = httpx.post(f"{url}{CHAT}", json=body(tools=[WEATHER], max_tokens=64), timeout=300)
        assert response.status_code == 200 and response.json()["choices"][0]["message"]["tool_calls"]


class TestQueueBound:
    @pytest.fixture(scope="class")
    def url(self, tmp_path_factory):
        log = tmp_path_factory.mktemp("queue") / "server.log"
        # One generation at a time (--parallel 1), so that the next request waits in the queue.
        with running_server("--parallel", "1", "--max-queue", "1", "--max-array-items", "300", log_path=log) as url:
            yield url

    def test_concurrent_load_past_the_queue_gets_429_with_retry_after(self, url):
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda i: httpx.post(f"{url}{CHAT}", json=body(max_tokens=48), timeout=300),
                                      range(8)))
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) == {200, 429}, statuses
        assert statuses.count(200) >= 2  # one generating plus one waiting
        for response in responses:
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
                assert response.json()["error"]["type"] == "rate_limit_error"
            else:
                assert response.json()["choices"][0]["message"]["tool_calls"]
        assert httpx.post(f"{url}{CHAT}", json=body(max_tokens=48), timeout=300).status_code == 200

    def test_a_client_leaving_the_queue_frees_its_place(self, url):
        # The grammar keeps this one generating for hundreds of tokens: the model cannot end it early.
        long = {"model": EMBEDDED_NAME, "messages": user("List many words."), "max_tokens": 1000, "stream": True,
                "response_format": {"type": "json_schema", "json_schema": {"name": "words", "schema": {
                    "type": "array", "items": {"type": "string"}, "minItems": 300}}}}
        with httpx.stream("POST", f"{url}{CHAT}", json=long, timeout=120) as generating:
            lines = generating.iter_lines()
            # The model is busy with this one once text comes (the role chunk is sent before it takes a slot).
            while '"content":"["' not in next(lines):
                pass
            with pytest.raises(httpx.ReadTimeout):  # waits in the queue, then hangs up
                httpx.post(f"{url}{CHAT}", json=body(max_tokens=8), timeout=1.5)
            deadline = time.monotonic() + 5
            while "hammer_queue_depth 0.0" not in httpx.get(f"{url}/metrics").text:
                assert time.monotonic() < deadline, "the departed client still holds its queue place"
                time.sleep(0.1)
            # The freed place takes a new waiter instead of a 429.
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                waiter = pool.submit(httpx.post, f"{url}{CHAT}", json=body(max_tokens=8), timeout=300)
                time.sleep(1)
                generating.close()
                assert waiter.result().status_code == 200


class TestMetricsPortAndKeys:
    def test_metrics_on_their_own_port_and_keys_never_logged(self, tmp_path):
        metrics_port, log = free_port(), tmp_path / "server.log"
        with running_server("--api-key", "sk-secret-one,sk-secret-two", "--metrics-port", str(metrics_port),
                            log_path=log) as url:
            keyed = {"Authorization": "Bearer sk-secret-two"}
            assert httpx.get(f"{url}/metrics", headers=keyed).status_code == 404  # not on the API port
            assert httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer sk-wrong-guess"}).status_code == 401
            assert httpx.get(f"{url}/v1/models", headers=keyed).status_code == 200
            scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")  # no key needed there
            assert scraped.status_code == 200
            assert 'hammer_requests_total{route="/v1/models",status="200"} 1.0' in scraped.text
            assert 'hammer_requests_total{route="/v1/models",status="401"} 1.0' in scraped.text
        text = log.read_text()
        assert '"status": 401' in text and '"path": "/v1/models"' in text  # the access log did record them
        for secret in ("sk-secret-one", "sk-secret-two", "sk-wrong-guess"):
            assert secret not in text
