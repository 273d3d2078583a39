"""The Responses API on a scripted backend: conversion, events, the store, errors, through the openai SDK."""

from __future__ import annotations

import asyncio
import doctest
import json
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient
from hammer.server.app import create_app
from hammer.server.backends.fake import FakeBackend
from hammer.server.responses import convert
from hammer.server.responses import store as store_module
from hammer.server.responses.protocol import OutputMessage, OutputText, ResponseObject
from hammer.server.responses.store import ResponseStore
from hammer.server.settings import Settings

WEATHER = {"type": "function", "name": "get_weather", "description": "Get the current weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
WEATHER_CALL = '```\n[{"name": "get_weather", "arguments": {"city": "Paris"}}]\n```'
TWO_CALLS = ('```\n[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
             '{"name": "get_weather", "arguments": {"city": "Rome"}}]\n```')
BAD_ARGS = '```\n[{"name": "get_weather", "arguments": {"city": 7}}]\n```'


def make_client(replies: list[str], **settings: Any) -> tuple[TestClient, FakeBackend]:
    config = Settings(served_model_name="fake", **settings)
    backend = FakeBackend(config, replies=replies)
    return TestClient(create_app(config, backend)), backend


def sdk(client: TestClient, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key=key, max_retries=0, http_client=client)


def post(client: TestClient, **body: Any) -> httpx.Response:
    # json.dumps escapes non-ASCII, so a lone surrogate can be sent as the JSON escape it is.
    return client.post("/v1/responses", content=json.dumps({"model": "fake", "input": "Weather in Paris?", **body}),
                       headers={"Content-Type": "application/json"})


def events_of(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in response.text.strip().split("\n\n"):
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: ")
        event = json.loads(data[6:])
        assert event["type"] == name[7:]
        events.append(event)
    return events


def without_ids(response: dict[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in response.items() if k not in ("id", "created_at")}
    data["output"] = [{k: v for k, v in item.items() if k not in ("id", "call_id")} for item in response["output"]]
    return data


def test_doctests():
    assert doctest.testmod(convert).failed == 0
    assert doctest.testmod(store_module).failed == 0


class TestCreate:
    def test_tool_call_through_the_sdk(self):
        client, _ = make_client([WEATHER_CALL])
        with client:
            response = sdk(client).responses.create(model="fake", input="Weather in Paris?", tools=[WEATHER])
        assert response.status == "completed" and response.object == "response" and response.id.startswith("resp_")
        (call,) = response.output
        assert call.type == "function_call" and call.name == "get_weather" and call.status == "completed"
        assert call.call_id.startswith("call_") and call.id.startswith("fc_")
        assert json.loads(call.arguments) == {"city": "Paris"}
        assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
        assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
        assert response.tools[0].name == "get_weather" and response.tool_choice == "auto"

    def test_tool_output_gets_an_answer_turn(self):
        client, backend = make_client(["```\n[]\n```", "It is 17 degrees in Paris."])
        items = [{"role": "user", "content": "Weather in Paris?"},
                 {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
                 {"type": "function_call_output", "call_id": "c1", "output": "It is 17 degrees in Paris."}]
        with client:
            response = sdk(client).responses.create(model="fake", input=items, tools=[WEATHER])
        assert response.output_text == "It is 17 degrees in Paris."
        (message,) = response.output
        assert message.type == "message" and message.role == "assistant" and message.status == "completed"
        assert message.content[0].type == "output_text" and message.content[0].annotations == []
        assert "It is 17 degrees in Paris." in backend.requests[-1].prompt  # the result reached the answer pass

    def test_instructions_and_text_content_parts(self):
        client, backend = make_client(["Hello!"])
        with client:
            response = post(client, instructions="Answer in French.", input=[
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hi"}]}])
        assert response.status_code == 200 and response.json()["output"][0]["content"][0]["text"] == "Hello!"
        prompt = backend.requests[0].prompt
        assert prompt.index("Answer in French.") < prompt.index("Say hi")

    def test_settings_are_echoed(self):
        client, _ = make_client(['{"a": 1}'])
        fmt = {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}
        with client:
            data = post(client, text={"format": fmt}, metadata={"k": "v"}, temperature=0, top_p=0.5,
                        max_output_tokens=50, user="u1", instructions="I").json()
        assert data["text"] == {"format": fmt} and data["metadata"] == {"k": "v"}
        assert (data["temperature"], data["top_p"], data["max_output_tokens"]) == (0, 0.5, 50)
        assert data["instructions"] == "I" and data["user"] == "u1" and data["error"] is None
        assert "invalid_tool_calls" not in data

    def test_truncation_is_incomplete(self):
        client, _ = make_client(["a long answer that does not fit"])
        with client:
            response = sdk(client).responses.create(model="fake", input="Tell me", max_output_tokens=5)
        assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
        assert response.output[0].status == "incomplete" and response.output_text == "a lon"

    def test_invalid_calls_are_reported(self):
        client, _ = make_client([BAD_ARGS])
        with client:
            data = post(client, tools=[WEATHER]).json()
        assert data["status"] == "completed"
        (invalid,) = data["invalid_tool_calls"]
        assert invalid["name"] == "get_weather" and "schema" in invalid["error"]
        assert data["output"][0]["type"] == "message"  # the explanation, as chat's content

    def test_named_tool_choice(self):
        client, _ = make_client([WEATHER_CALL])
        with client:
            data = post(client, tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"}).json()
        assert data["tool_choice"] == {"type": "function", "name": "get_weather"}
        assert data["output"][0]["name"] == "get_weather"


class TestStream:
    @pytest.mark.parametrize("replies,body", [
        ([TWO_CALLS], {"tools": [WEATHER]}),
        (["Hello there!"], {}),
        ([BAD_ARGS], {"tools": [WEATHER]}),
        (["cut off here"], {"max_output_tokens": 3}),
    ])
    def test_stream_and_non_stream_agree(self, replies, body):
        client, _ = make_client(replies)
        with client:
            plain = post(client, **body).json()
            events = events_of(post(client, stream=True, **body))
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
        assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
        final = events[-1]
        assert final["type"] == ("response.incomplete" if plain["status"] == "incomplete" else "response.completed")
        assert without_ids(final["response"]) == without_ids(plain)
        assert len({e["response"]["id"] for e in events if "response" in e}) == 1

    def test_event_order_per_item(self):
        client, _ = make_client([TWO_CALLS])
        with client:
            kinds = [e["type"] for e in events_of(post(client, stream=True, tools=[WEATHER]))]
        per_call = ["response.output_item.added", "response.function_call_arguments.delta",
                    "response.function_call_arguments.done", "response.output_item.done"]
        assert kinds == ["response.created", "response.in_progress", *per_call, *per_call, "response.completed"]

    def test_text_events(self):
        client, _ = make_client(["Hi!"])
        with client:
            events = events_of(post(client, stream=True))
        kinds = [e["type"] for e in events]
        assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added", *["response.output_text.delta"] * 3,
                         "response.output_text.done", "response.content_part.done", "response.output_item.done",
                         "response.completed"]
        assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "Hi!"
        assert events[-3]["part"] == {"type": "output_text", "text": "Hi!", "annotations": []}

    def test_sdk_stream_helper(self):
        client, _ = make_client([WEATHER_CALL])
        with client:
            with sdk(client).responses.stream(model="fake", input="Weather in Paris?", tools=[WEATHER]) as stream:
                kinds = [event.type for event in stream]
                final = stream.get_final_response()
        assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
        assert final.output[0].name == "get_weather" and json.loads(final.output[0].arguments) == {"city": "Paris"}

    def test_error_after_the_start_is_an_error_event(self):
        class Failing(FakeBackend):
            async def generate(self, request):
                raise RuntimeError("engine exploded")
                yield  # pragma: no cover

        config = Settings(served_model_name="fake")
        with TestClient(create_app(config, Failing(config)), raise_server_exceptions=False) as client:
            events = events_of(post(client, stream=True))
        assert [e["type"] for e in events] == ["response.created", "response.in_progress", "error"]
        assert events[-1]["code"] == "server_error" and events[-1]["message"] and events[-1]["sequence_number"] == 2

    def test_streams_past_the_queue_get_429_before_the_stream(self):
        config = Settings(served_model_name="fake", max_queue=1)
        app = create_app(config, FakeBackend(config, replies=["slow reply"], delay=0.02))

        async def main() -> list[httpx.Response]:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                    body = {"model": "fake", "input": "hi", "stream": True}
                    return await asyncio.gather(*(client.post("/v1/responses", json=body) for _ in range(6)))

        statuses = sorted(r.status_code for r in asyncio.run(main()))
        assert statuses.count(200) >= 1 and statuses.count(429) >= 1 and set(statuses) == {200, 429}


class TestStore:
    def test_previous_response_id_continues_the_conversation(self):
        client, backend = make_client([WEATHER_CALL, "```\n[]\n```", "It is 17 degrees."])
        with client:
            api = sdk(client)
            first = api.responses.create(model="fake", input="Weather in Paris?", tools=[WEATHER],
                                         instructions="Only the first request's")
            output = {"type": "function_call_output", "call_id": first.output[0].call_id,
                      "output": "It is 17 degrees in Paris."}
            second = api.responses.create(model="fake", input=[output], tools=[WEATHER],
                                          previous_response_id=first.id)
        assert second.output_text == "It is 17 degrees." and second.previous_response_id == first.id
        answer_prompt = backend.requests[-1].prompt
        assert "Weather in Paris?" in answer_prompt and "It is 17 degrees in Paris." in answer_prompt
        assert "Only the first request's" not in backend.requests[1].prompt  # instructions are not carried over

    def test_get_delete_and_unknown_ids(self):
        client, _ = make_client(["Hi"])
        with client:
            created = post(client).json()
            assert client.get(f"/v1/responses/{created['id']}").json() == created
            assert sdk(client).responses.retrieve(created["id"]).id == created["id"]
            deleted = client.delete(f"/v1/responses/{created['id']}")
            assert deleted.json() == {"id": created["id"], "object": "response", "deleted": True}
            for response in (client.get(f"/v1/responses/{created['id']}"),
                             client.delete(f"/v1/responses/{created['id']}"),
                             post(client, previous_response_id=created["id"])):
                assert response.status_code == 404
                error = response.json()["error"]
                assert set(error) == {"message", "type", "param", "code"}
                assert error["param"] in ("response_id", "previous_response_id")

    def test_store_false_keeps_nothing(self):
        client, _ = make_client(["Hi"])
        with client:
            created = post(client, store=False).json()
            assert created["store"] is False
            assert client.get(f"/v1/responses/{created['id']}").status_code == 404

    def test_each_api_key_sees_its_own(self):
        client, _ = make_client(["Hi"], api_key=["k1", "k2"])
        with client:
            first = client.post("/v1/responses", json={"model": "fake", "input": "hi"},
                                headers={"Authorization": "Bearer k1"}).json()
            mine = client.get(f"/v1/responses/{first['id']}", headers={"Authorization": "Bearer k1"})
            theirs = client.get(f"/v1/responses/{first['id']}", headers={"Authorization": "Bearer k2"})
            anonymous = client.get(f"/v1/responses/{first['id']}")
            metrics = client.get("/metrics", headers={"Authorization": "Bearer k1"}).text
        assert 'route="/v1/responses/{response_id}",status="401"' in metrics  # labelled though refused before routing
        assert mine.status_code == 200
        assert theirs.status_code == 404 and anonymous.status_code == 401

    def test_the_namespace_is_the_key_that_authenticated(self):
        client, _ = make_client(["Hi"], api_key=["k1", "k2"])
        with client:
            first = client.post("/v1/responses", json={"model": "fake", "input": "hi"},
                                headers={"x-api-key": "k1"}).json()
            path = f"/v1/responses/{first['id']}"
            assert client.get(path, headers={"Authorization": "Bearer k1"}).status_code == 200
            assert client.get(path, headers={"x-api-key": "k2"}).status_code == 404
            # Another key placed last (or first) beside k1 names no namespace: the request is refused.
            for headers in ([("Authorization", "Bearer k1"), ("Authorization", "Bearer k2")],
                            [("Authorization", "Bearer k2"), ("Authorization", "Bearer k1")]):
                assert client.delete(path, headers=headers).status_code == 401
            assert client.delete(path, headers={"x-api-key": "k2"}).status_code == 404
            assert client.get(path, headers={"x-api-key": "k1"}).status_code == 200  # still there

    def test_one_key_cannot_evict_another_keys_responses(self):
        store = ResponseStore(max_responses=10, max_chars=20_000, shares=2)

        def response(rid: str, text: str = "x") -> ResponseObject:
            return ResponseObject(id=rid, status="completed", model="m", parallel_tool_calls=True, temperature=1,
                                  top_p=1, text={}, tool_choice="auto", tools=[],
                                  output=[OutputMessage(id="msg", content=[OutputText(text=text)])])

        assert store.put("k1", response("mine"), [])
        for i in range(20):
            store.put("k2", response(f"theirs-{i}", "y" * 3000), [])
        assert store.get("k1", "mine") is not None  # k2 filled only its own half
        assert store.get("k2", "theirs-19") is not None and store.get("k2", "theirs-0") is None
        assert not store.put("k2", response("too-big", "y" * 12_000), [])  # larger than a share

    def test_a_stored_response_keeps_no_descriptions_or_schemas(self):
        client, _ = make_client(["Hi"])
        schema = {"type": "object", "description": "d" * 2_000}
        with client:
            created = post(client, tools=[{**WEATHER, "description": "w" * 2_000}],
                           text={"format": {"type": "json_schema", "name": "out", "schema": schema}}).json()
            stored = client.get(f"/v1/responses/{created['id']}").json()
            follow_up = post(client, previous_response_id=created["id"], input="And tomorrow?")
        assert created["tools"][0]["description"] == "w" * 2_000  # the answer itself echoes the request
        assert stored["tools"] == [{"type": "function", "name": WEATHER["name"]}]
        assert stored["text"] == {"format": {"type": "json_schema", "name": "out"}}
        assert stored["output"] == created["output"] and follow_up.status_code == 200

    def test_bounds(self):
        now = [0.0]
        store = ResponseStore(max_responses=2, max_age_s=10, max_chars=10_000, clock=lambda: now[0])

        def response(rid: str, text: str = "x") -> ResponseObject:
            return ResponseObject(id=rid, status="completed", model="m", parallel_tool_calls=True, temperature=1,
                                  top_p=1, text={}, tool_choice="auto", tools=[],
                                  output=[OutputMessage(id="msg", content=[OutputText(text=text)])])

        for rid in ("a", "b"):
            assert store.put("", response(rid), [])
        assert store.get("", "a") is not None  # a is now the most recently used
        store.put("", response("c"), [])
        assert store.get("", "b") is None and store.get("", "a") and store.get("", "c")  # LRU out
        assert store.get("other", "a") is None
        now[0] = 11
        assert store.get("", "a") is None and len(store) == 0  # too old
        assert not store.put("", response("big", "y" * 20_000), [])  # larger than the whole store
        store.put("", response("d", "y" * 6_000), [])
        store.put("", response("e", "y" * 6_000), [])
        assert store.get("", "d") is None and store.get("", "e") is not None  # over max_chars


class TestErrors:
    @pytest.mark.parametrize("body,param", [
        ({"tools": [{**WEATHER, "parameters": {"type": "object", "properties": {"a": {"not": {}}}}}]},
         "tools[0].parameters"),
        ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
        ({"input": [{"role": "user", "content": "x"},
                    {"type": "function_call", "call_id": "c", "name": "get_weather", "arguments": "[1]"}],
          "tools": [WEATHER]}, "input[1].arguments"),
        ({"input": [{"type": "web_search_call"}]}, "input[0]"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
        ({"text": {"format": {"type": "json_schema", "schema": {"type": "object", "not": {}}}}}, "text.format"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"input": []}, "input"),
        ({"input": "a\ud800"}, "input"),
        ({"temperature": "1"}, "temperature"),
        ({"model": "other"}, "model"),
    ])
    def test_errors_name_the_responses_field(self, body, param):
        client, _ = make_client(["Hi"])
        with client:
            response = post(client, **body)
        assert 400 <= response.status_code < 500, response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["param"] is not None and error["param"].startswith(param), error

    def test_metrics_and_openapi(self):
        client, _ = make_client(["Hi"])
        with client:
            post(client)
            client.get("/v1/responses/nothing")
            metrics = client.get("/metrics").text
            paths = client.get("/openapi.json").json()["paths"]
        assert 'route="/v1/responses",status="200"' in metrics
        assert 'route="/v1/responses/{response_id}",status="404"' in metrics
        assert "text/event-stream" in paths["/v1/responses"]["post"]["responses"]["200"]["content"]
        assert set(paths["/v1/responses/{response_id}"]) == {"get", "delete"}

    def test_405_lists_every_method_of_the_path(self):
        client, _ = make_client(["Hi"])
        with client:
            by_id = client.request("OPTIONS", "/v1/responses/x")
            create = client.get("/v1/responses")
        assert by_id.status_code == 405 and by_id.headers["allow"] == "DELETE, GET"
        assert create.status_code == 405 and create.headers["allow"] == "POST"
        assert by_id.json()["error"]["type"] == "invalid_request_error"
