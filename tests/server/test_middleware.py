"""Request ids, body limits, API keys (flag, file, public metrics) and timeouts."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from hammer.server.app import create_app
from hammer.server.backends.fake import FakeBackend
from hammer.server.settings import Settings

from tests.server.tools_fixtures import user


def client_for(replies: tuple[str, ...] = ("ok",), delay: float = 0.0, **settings: Any) -> TestClient:
    config = Settings(served_model_name="fake", **settings)
    return TestClient(create_app(config, FakeBackend(config, replies=replies, delay=delay)))


class TestRequestId:
    def test_generated_and_echoed(self):
        with client_for() as client:
            generated = client.get("/health").headers["x-request-id"]
            echoed = client.get("/health", headers={"x-request-id": "abc-123"}).headers["x-request-id"]
            replaced = client.get("/health", headers={"x-request-id": "bad id\n"}).headers["x-request-id"]
        assert generated.startswith("req_") and echoed == "abc-123" and replaced.startswith("req_")


class TestLimits:
    def test_body_too_large(self):
        with client_for(max_body_bytes=2048) as client:
            response = client.post("/v1/chat/completions", json={"model": "fake", "messages": user("x" * 5000)})
        assert response.status_code == 400 and response.json()["error"]["code"] == "request_too_large"

    def test_too_many_messages(self):
        with client_for(max_messages=3) as client:
            response = client.post("/v1/chat/completions", json={"model": "fake", "messages": user("x") * 4})
        assert response.status_code == 400 and response.json()["error"]["param"] == "messages"

    def test_timeout_is_504_and_frees_the_server(self):
        with client_for(replies=("a slow reply",), delay=0.2, request_timeout=0.5) as client:
            response = client.post("/v1/chat/completions", json={"model": "fake", "messages": user("x")})
            assert response.status_code == 504 and response.json()["error"]["type"] == "timeout_error"
            quick = client.post("/v1/chat/completions", json={"model": "fake", "messages": user("x"), "max_tokens": 1})
        assert quick.status_code == 200


class TestApiKeys:
    def test_keys_from_file_and_public_metrics(self, tmp_path):
        keys = tmp_path / "keys"
        keys.write_text("# ops\nfile-key\n")
        with client_for(api_key=["flag-key"], api_key_file=keys, metrics_public=True) as client:
            assert client.get("/metrics").status_code == 200
            assert client.get("/v1/models").status_code == 401
            for key in ("flag-key", "file-key"):
                assert client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
            denied = client.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert denied.headers["www-authenticate"] == "Bearer"

    def test_refused_requests_are_counted_under_their_route(self):
        with client_for(api_key=["k"], metrics_public=True) as client:
            client.get("/v1/models", headers={"Authorization": "Bearer wrong"})
            client.get("/no/such/route", headers={"Authorization": "Bearer wrong"})
            metrics = client.get("/metrics").text
        assert 'hammer_requests_total{route="/v1/models",status="401"} 1.0' in metrics
        assert 'hammer_requests_total{route="unmatched",status="401"} 1.0' in metrics  # label values stay bounded

    def test_x_api_key_is_accepted_as_bearer_is(self):
        with client_for(api_key=["k1", "k2"]) as client:
            assert client.get("/v1/models", headers={"x-api-key": "k2"}).status_code == 200
            both = client.get("/v1/models", headers={"x-api-key": "k1", "Authorization": "Bearer k1"})
            assert both.status_code == 200
            assert client.get("/v1/models", headers={"x-api-key": "nope"}).status_code == 401

    @pytest.mark.parametrize("headers", [
        [("Authorization", "Bearer k1"), ("Authorization", "Bearer k2")],  # a proxy and this server may read either
        [("Authorization", "Bearer k2"), ("Authorization", "Bearer k2")],
        [("x-api-key", "k1"), ("x-api-key", "k2")],
        [("Authorization", "Bearer k1"), ("x-api-key", "k2")],  # two kinds that disagree
        [("Authorization", "Basic k1")],
    ], ids=["two-bearers", "one-bearer-twice", "two-x-api-keys", "bearer-and-other-x-api-key", "basic"])
    def test_anything_but_one_credential_is_a_401(self, headers):
        with client_for(api_key=["k1", "k2"]) as client:
            response = client.get("/v1/models", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["message"] == ("Incorrect API key provided. Send one key, as "
                                                       "'Authorization: Bearer KEY' or 'x-api-key: KEY'.")

    def test_metrics_protected_by_default(self):
        with client_for(api_key=["k"]) as client:
            assert client.get("/metrics").status_code == 401
            assert client.get("/health").status_code == 200
