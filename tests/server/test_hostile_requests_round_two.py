"""Every reproduction of issue 22 against the real server (two API keys): a quick 4xx or a bounded
answer, ``/health`` responsive, RSS flat across repeats, and no key reading, deleting or evicting
another key's stored responses.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import pytest
from hammer.server.backends.prefix_store import model_key
from hammer.server.settings import EMBEDDED_NAME, embedded_model_path

from tests.conftest import served
from tests.server.test_hostile_requests import assert_400, rss
from tests.server.tools_fixtures import user

pytestmark = pytest.mark.slow

CHAT = "/v1/chat/completions"
K1 = {"Authorization": "Bearer k1"}
K2 = {"x-api-key": "k2"}
# Per key: 20,000 characters of stored responses (--responses-store-chars is shared out equally).
SERVER_ARGS = ("--n-ctx", "2048", "--api-key", "k1,k2", "--responses-store-chars", "40000")
QUICK_S = 1.0  # the issue's "within a second"
# /health while a hostile request is prepared (on a thread: the GIL is shared). The issue asks 100 ms
# on an idle machine; tests share two cores with other work, and the failures seen took seconds.
HEALTH_S = 0.25
MiB = 1024**2


class Server:
    def __init__(self, proc: Any, url: str) -> None:
        self.proc, self.url = proc, url

    def post(self, body: Any, headers: dict[str, str] = K1, path: str = CHAT, timeout: float = 60) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, headers=headers, timeout=timeout)

    def timed(self, body: Any, headers: dict[str, str] = K1) -> tuple[httpx.Response, float, float]:
        """The answer, how long it took, and the slowest ``/health`` while it was on its way."""
        with concurrent.futures.ThreadPoolExecutor(1) as pool, httpx.Client(timeout=10) as health:
            health.get(f"{self.url}/health")  # connected before: the probe times the server, not a handshake
            started = time.monotonic()
            future = pool.submit(self.post, body, headers)
            slowest = 0.0
            while not future.done():
                asked = time.monotonic()
                assert health.get(f"{self.url}/health").status_code == 200
                slowest = max(slowest, time.monotonic() - asked)
                time.sleep(0.01)
            return future.result(), time.monotonic() - started, slowest

    def assert_serving(self) -> None:
        assert self.proc.poll() is None, "the server died"
        started = time.monotonic()
        assert httpx.get(f"{self.url}/health", timeout=5).status_code == 200
        assert time.monotonic() - started < HEALTH_S
        assert self.post(chat_body("hi", max_tokens=2)).status_code == 200


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("round-two") / "server.log"
    with served(*SERVER_ARGS, log_path=log) as (proc, url):
        instance = Server(proc, url)
        instance.post(chat_body("hi", max_tokens=2)).raise_for_status()  # compute buffers in the baseline
        yield instance


def chat_body(content: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": EMBEDDED_NAME, "messages": user(content), "temperature": 0, "max_tokens": 8, **extra}


def with_schema(where: str, schema: Any) -> tuple[dict[str, Any], str]:
    """A request carrying ``schema`` as a tool's property or as ``response_format``; the param a 400 names."""
    if where == "tool":
        parameters = {"type": "object", "properties": {"x": schema}, "required": ["x"]}
        function = {"name": "f", "description": "Test function", "parameters": parameters}
        return chat_body("Call f.", tools=[{"type": "function", "function": function}],
                         tool_choice={"type": "function", "function": {"name": "f"}}), "tools[0].function.parameters"
    return (chat_body("Answer in JSON.", response_format={"type": "json_schema",
                                                          "json_schema": {"name": "out", "schema": schema}}),
            "response_format.json_schema.schema")


def assert_quick(answer: tuple[httpx.Response, float, float]) -> httpx.Response:
    response, took, slowest_health = answer
    assert took < QUICK_S, f"answered in {took:.2f} s"
    assert slowest_health < HEALTH_S, f"/health took {slowest_health:.2f} s meanwhile"
    return response


# -- 1. a backtracking pattern checked against enum values -------------------------------------------

@pytest.mark.parametrize("where", ["tool", "format"])
def test_a_backtracking_pattern_with_an_enum_answers_in_milliseconds(server, where):
    probe = {"type": "string", "pattern": "^(a+)+$", "enum": ["a" * 25 + "!", "ok"]}
    body, param = with_schema(where, probe)
    assert_400(assert_quick(server.timed(body)), param, mentions="no value can match")
    longer = {**probe, "enum": ["a" * 40 + "!", "aaa"]}  # each character doubled re's time: 40 took a day
    body, _ = with_schema(where, longer)
    response, took, slowest_health = server.timed({**body, "max_tokens": 64})
    # A generation (seconds on a loaded CPU); checking the enum with re would have taken a day.
    assert response.status_code == 200 and took < 60.0 and slowest_health < HEALTH_S
    message = response.json()["choices"][0]["message"]
    produced = json.loads(message["tool_calls"][0]["function"]["arguments"])["x"] if where == "tool" \
        else json.loads(message["content"])
    assert produced == "aaa"
    server.assert_serving()


# -- 2. long stop strings ------------------------------------------------------------------------------

def test_a_stop_string_past_the_limit_is_a_quick_400(server):
    error = assert_400(assert_quick(server.timed(chat_body(stop=["é" + "x" * 400_000], max_tokens=3))), "stop")
    assert "1024 characters" in error["message"]
    server.assert_serving()


def test_stop_strings_at_the_limit_leave_other_generations_unslowed(server):
    alone = server.post(chat_body("Count to twenty.", max_tokens=16))
    assert alone.status_code == 200
    stops = ["é" + "x" * 1023] * 4
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        long_stops = pool.submit(server.post, chat_body("Count to twenty.", max_tokens=16, stop=stops))
        started = time.monotonic()
        other = server.post(chat_body("Count to twenty.", max_tokens=16))
        took = time.monotonic() - started
        assert long_stops.result().status_code == 200
    assert other.status_code == 200 and took < 5.0, f"another client's request took {took:.1f} s"
    server.assert_serving()


# -- 3 and 4. schema expansion, and the memo ------------------------------------------------------------

def bomb(tag: str) -> dict[str, Any]:
    """An allOf of two anyOfs of 16 objects whose property is again an anyOf of 16 (65,536 leaves)."""
    def branch(i: int) -> dict[str, Any]:
        inner = [{"type": "object", "properties": {f"q{j}": {"type": "string"}}} for j in range(16)]
        return {"type": "object", "properties": {f"p{i}": {"anyOf": inner}}}
    return {"allOf": [{"anyOf": [branch(i) for i in range(16)]}, {"anyOf": [branch(i) for i in range(16)]}],
            "description": tag}


@pytest.mark.parametrize("where", ["tool", "format"])
def test_an_allof_anyof_bomb_is_a_quick_400_naming_what_grew_and_rss_stays_flat(server, where):
    def attempt(i: int) -> None:
        body, param = with_schema(where, bomb(f"{where}-{i}-" + "d" * 19_000))  # distinct, ~63 KB, memoizable
        error = assert_400(assert_quick(server.timed(body)), param, mentions="alternatives are distributed")
        assert "$ref" not in error["message"]

    for i in range(3):  # allocator arenas settle
        attempt(i)
    before = rss(server.proc.pid)
    for i in range(3, 23):
        attempt(i)
    grown = (rss(server.proc.pid) - before) / MiB
    assert grown < 16, f"20 rejected schemas kept {grown:.0f} MiB"  # was +61 MB each
    server.assert_serving()


def test_an_anyof_of_8000_consts_under_a_long_name_is_a_quick_400(server):
    schema = {"type": "object", "properties": {"x" * 200: {"anyOf": [{"const": i} for i in range(8000)]}}}
    body, param = with_schema("format", schema)
    assert_400(assert_quick(server.timed(body)), param, mentions="8000 alternatives.*limit of 1024")
    server.assert_serving()


# -- 6. logit_bias keys ----------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["²", "١٢", "1" * 5000, " 12", "+12"])
def test_logit_bias_keys_are_ascii_decimals(server, key):
    error = assert_400(server.post(chat_body(logit_bias={key: 1})), "logit_bias")
    assert repr(key if len(key) <= 40 else key[:40] + "...") in error["message"]
    assert server.post(chat_body(logit_bias={"12": 1}, max_tokens=2)).status_code == 200


# -- 7 and 8. one credential, and the Responses store per key ------------------------------------------

def create_response(server: Server, headers: dict[str, str], **extra: Any) -> dict[str, Any]:
    response = server.post({"model": EMBEDDED_NAME, "input": "Say hi.", "max_output_tokens": 1, **extra},
                           headers=headers, path="/v1/responses")
    assert response.status_code == 200, response.text[:600]
    return response.json()


def test_several_credentials_are_a_401_and_the_store_follows_the_key_that_authenticated(server):
    mine = create_response(server, K1)
    path = f"{server.url}/v1/responses/{mine['id']}"
    for headers in ([("Authorization", "Bearer k1"), ("Authorization", "Bearer k2")],
                    [("Authorization", "Bearer k2"), ("Authorization", "Bearer k1")],
                    [("Authorization", "Bearer k1"), ("x-api-key", "k2")],
                    [("x-api-key", "k1"), ("x-api-key", "k1")]):
        for method in ("GET", "DELETE"):
            assert httpx.request(method, path, headers=headers, timeout=10).status_code == 401
    assert httpx.get(path, headers=K2, timeout=10).status_code == 404
    assert httpx.delete(path, headers=K2, timeout=10).status_code == 404
    assert httpx.get(path, headers={"x-api-key": "k1"}, timeout=10).status_code == 200  # x-api-key works too
    server.assert_serving()


def test_one_key_cannot_evict_another_keys_responses(server):
    mine = create_response(server, K1)
    tool = {"type": "function", "name": "lookup", "description": "Looks things up. " * 200,
            "parameters": {"type": "object", "properties": {"q": {"type": "string", "description": "q" * 2000}}}}
    theirs = [create_response(server, K2, tools=[tool], tool_choice="none") for _ in range(20)]
    assert httpx.get(f"{server.url}/v1/responses/{mine['id']}", headers=K1, timeout=10).status_code == 200
    stored = httpx.get(f"{server.url}/v1/responses/{theirs[-1]['id']}", headers=K2, timeout=10).json()
    assert stored["tools"] == [{"type": "function", "name": "lookup"}]  # no description kept
    server.assert_serving()


# -- 9. a crafted --cache-dir file ---------------------------------------------------------------------

def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_a_crafted_cache_file_allocates_nothing_at_start(tmp_path):
    folder = tmp_path / model_key(str(embedded_model_path()))
    folder.mkdir()

    def npy(shape: tuple[int, ...], descr: str, data: bytes) -> bytes:
        out = io.BytesIO()
        np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": False, "shape": shape})
        return out.getvalue() + data

    with zipfile.ZipFile(folder / "prefix-0001.npz", "w") as archive:
        archive.writestr("tokens.npy", npy((40,), "<i4", np.arange(40, dtype=np.int32).tobytes()))
        archive.writestr("state.npy", npy((3 << 30,), "|u1", bytes(8)))
    assert (folder / "prefix-0001.npz").stat().st_size < 1024
    with served("--n-ctx", "2048", "--cache-dir", str(tmp_path), log_path=tmp_path / "server.log") as (proc, url):
        assert peak_rss(proc.pid) < 1024 * MiB, f"peak RSS {peak_rss(proc.pid) / MiB:.0f} MiB at start"
        assert httpx.post(f"{url}{CHAT}", json=chat_body("hi", max_tokens=2), timeout=60).status_code == 200


# -- the prefix cache across keys --------------------------------------------------------------------

def prefix_hits(url: str) -> float:
    metrics = httpx.get(f"{url}/metrics", headers=K1, timeout=10).text
    return float(next(line.split()[1] for line in metrics.splitlines()
                      if line.startswith("hammer_prefix_cache_hits_total ")))


def ask(url: str, headers: dict[str, str], content: str) -> None:
    response = httpx.post(f"{url}{CHAT}", json=chat_body(content, max_tokens=1), headers=headers, timeout=120)
    assert response.status_code == 200, response.text[:600]


SECRET = "The merger with Initech closes on Friday; tell nobody. " * 8


def test_the_shared_prefix_cache_answers_one_key_from_another_keys_prompt(server):
    # What makes timing tell k2 that k1 sent this prompt (a restored prefix answers many times faster),
    # and what --cache-per-key stops.
    ask(server.url, K1, SECRET + "shared")
    before = prefix_hits(server.url)
    ask(server.url, K2, SECRET + "shared")
    assert prefix_hits(server.url) == before + 1


def test_with_cache_per_key_a_prompt_is_restored_only_for_its_own_key(tmp_path):
    with served(*SERVER_ARGS, "--cache-per-key", log_path=tmp_path / "server.log") as (proc, url):
        ask(url, K1, SECRET)
        before = prefix_hits(url)
        ask(url, K2, SECRET)
        assert prefix_hits(url) == before  # k1's entry is not k2's
        ask(url, K2, SECRET)
        ask(url, {"x-api-key": "k1"}, SECRET)
        assert prefix_hits(url) == before + 2  # each key's own entry serves it
