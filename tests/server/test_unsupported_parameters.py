"""Request parameters are honoured or refused with a 400 naming them, never accepted and ignored."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient
from hammer.server.app import create_app
from hammer.server.backends.fake import FakeBackend
from hammer.server.settings import Settings

from tests.server.tools_fixtures import TOOLS, user

CHAT = {"model": "fake", "messages": user("What's the weather in Paris?"), "tools": TOOLS}
RESPONSES = {"model": "fake", "input": "What's the weather in Paris?"}
CALL = '```\n[{"name": "get_weather", "arguments": {"city": "Paris"}}]\n```'


@pytest.fixture(scope="module")
def client() -> TestClient:
    config = Settings(served_model_name="fake")
    with TestClient(create_app(config, FakeBackend(config, replies=[CALL]))) as test_client:
        yield test_client


def refused(response: Any, param: str) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    return error["message"]


class TestUnknownParameters:
    @pytest.mark.parametrize(("route", "body"), [("/v1/chat/completions", CHAT), ("/v1/responses", RESPONSES)])
    def test_an_unknown_top_level_parameter_is_named_as_openai_names_it(self, client, route, body):
        message = refused(client.post(route, json={**body, "top_k": 5}), "top_k")
        assert message == "Unrecognized request argument supplied: top_k"

    def test_several_unknown_parameters_are_all_named(self, client):
        message = refused(client.post("/v1/chat/completions", json={**CHAT, "top_k": 5, "min_p": 0.1}), "top_k")
        assert message == "Unrecognized request arguments supplied: top_k, min_p"

    def test_the_openai_sdk_sees_a_bad_request(self, client):
        sdk = openai.OpenAI(base_url=f"{client.base_url}/v1", api_key="unused", http_client=client)
        with pytest.raises(openai.BadRequestError, match="Unrecognized request argument supplied: top_k"):
            sdk.chat.completions.create(**CHAT, extra_body={"top_k": 5})

    def test_unknown_fields_inside_messages_are_still_accepted(self, client):
        """SDKs echo assistant messages back with fields such as ``refusal`` and ``annotations``."""
        messages = [*user("hi"), {"role": "assistant", "content": "hello", "refusal": None, "annotations": []},
                    *user("Weather in Paris?")]
        assert client.post("/v1/chat/completions", json={**CHAT, "messages": messages}).status_code == 200


class TestChatParametersThatAskForNothing:
    @pytest.mark.parametrize("extra", [
        {"store": False}, {"store": None}, {"service_tier": "auto"}, {"service_tier": "default"},
        {"modalities": ["text"]}, {"metadata": {"team": "a"}}, {"prompt_cache_key": "k"},
        {"safety_identifier": "u1"}, {"reasoning_effort": None}])
    def test_are_accepted(self, client, extra):
        response = client.post("/v1/chat/completions", json={**CHAT, **extra})
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["finish_reason"] == "tool_calls"

    @pytest.mark.parametrize(("extra", "words"), [
        ({"store": True}, "not stored"), ({"service_tier": "priority"}, "one processing tier"),
        ({"reasoning_effort": "low"}, "does not reason"), ({"modalities": ["text", "audio"]}, "only text"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "only text"), ({"verbosity": "low"}, "verbosity"),
        ({"prediction": {"type": "content", "content": "x"}}, "predicted outputs"),
        ({"web_search_options": {}}, "web search"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata has 17 keys; at most 16")])
    def test_asking_for_more_is_refused_by_name(self, client, extra, words):
        (param,) = extra
        message = refused(client.post("/v1/chat/completions", json={**CHAT, **extra}), param)
        assert words in message


class TestResponsesParametersThatAskForNothing:
    @pytest.mark.parametrize("extra", [
        {"include": []}, {"truncation": "disabled"}, {"reasoning": {}}, {"reasoning": {"effort": None}},
        {"background": False}, {"service_tier": "auto"}, {"prompt_cache_key": "k"},
        {"stream_options": {"include_obfuscation": False}}])
    def test_are_accepted(self, client, extra):
        response = client.post("/v1/responses", json={**RESPONSES, **extra})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "completed"

    @pytest.mark.parametrize(("extra", "words"), [
        ({"include": ["message.output_text.logprobs"]}, "included"), ({"truncation": "auto"}, "never truncated"),
        ({"reasoning": {"effort": "low"}}, "does not reason"), ({"background": True}, "foreground"),
        ({"max_tool_calls": 2}, "cannot be capped"), ({"top_logprobs": 3}, "chat completions"),
        ({"conversation": "conv_1"}, "previous_response_id"), ({"prompt": {"id": "pmpt_1"}}, "prompt templates")])
    def test_asking_for_more_is_refused_by_name(self, client, extra, words):
        (param,) = extra
        message = refused(client.post("/v1/responses", json={**RESPONSES, **extra}), param)
        assert words in message
