"""``hammer eval`` as a whole against two fake endpoints that never call a tool (no model needed)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest
from hammer.evaluation.bfcl_data import load_category

from hammer.cli import main
from tests.evaluation.fake_endpoint import JSONHandler

pytest.importorskip("bfcl_eval")
pytest.importorskip("openai")

REFUSAL = {"id": "c", "object": "chat.completion", "created": 0, "model": "fake-model", "choices": [{
    "index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "No tool fits."}}]}
MODELS = {"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "me"}]}


class Refuser(JSONHandler):
    def do_GET(self) -> None:
        self.send_json(200, MODELS)

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert request["model"] == "fake-model" and request["temperature"] == 0 and request["tools"]
        self.send_json(200, REFUSAL)



@pytest.fixture
def refusers() -> Iterator[list[str]]:
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Refuser) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield [f"http://127.0.0.1:{s.server_address[1]}" for s in servers]
    for server in servers:
        server.shutdown()


def test_compare_and_mask_write_every_record_and_a_side_by_side_report(refusers, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["eval", "--base-url", refusers[0], "--label", "a", "--compare", refusers[1], "--compare-label", "b",
                 "--categories", "simple_python,irrelevance", "--limit", "2", "--mask-names", "--workers", "2",
                 "--output", str(out)])
    assert code == 0
    data = json.loads((out / "results.json").read_text())
    sampled = load_category("simple_python", 2) + load_category("irrelevance", 2)
    first_half, second_half = (int(e.id.rsplit("_", 1)[1]) for e in sampled[:2])
    assert first_half < 200 <= second_half  # simple_python has 400 entries
    assert [(r["label"], r["masked"], r["model"]) for r in data["runs"]] == [
        ("a", False, "fake-model"), ("a", True, "fake-model"), ("b", False, "fake-model"), ("b", True, "fake-model")]
    for run in data["runs"]:
        categories = run["summary"]["categories"]
        assert categories["simple_python"]["accuracy"] == 0.0 and categories["irrelevance"]["accuracy"] == 1.0
        assert run["summary"]["errors"] == 0 and len(run["records"]) == 4
        # --limit 2: one entry from each half of the category, the same in every run (seed 0)
        assert [r["id"] for r in run["records"]] == [e.id for e in sampled]
    assert data["config"]["sample"] == "2 entries spread over each category (seed 0)"
    masked_request = data["runs"][1]["records"][0]["request"]
    assert masked_request["tools"][0]["function"]["name"] != "calculate_triangle_area"
    assert not (out / "records.partial.jsonl").exists()
    report = capsys.readouterr().out
    assert "| simple_python | 2 | 0.0% | 0.0% | 0.0% | 0.0% |" in report
    assert "| b | **overall** | 50.0% | 50.0% | +0.0 |" in report


def test_bad_arguments_end_with_a_message_not_a_traceback(tmp_path, capsys):
    assert main(["eval", "--base-url", "http://127.0.0.1:9", "--categories", "nope", "--output", str(tmp_path)]) == 2
    assert "unsupported BFCL category" in capsys.readouterr().err
    # no --model and nothing listening: the model lookup fails with a message naming the URL
    assert main(["eval", "--base-url", "http://127.0.0.1:9", "--categories", "irrelevance", "--limit", "1",
                 "--output", str(tmp_path)]) == 1
    assert capsys.readouterr().err == ("hammer eval: cannot reach http://127.0.0.1:9/v1 (connection refused): "
                                       "is `hammer serve` running there? check --base-url\n")


class Locked(JSONHandler):
    def do_GET(self) -> None:
        self.send_json(401, {"error": {"message": "Invalid API key.", "type": "authentication_error"}})


@pytest.mark.parametrize(("args", "status", "words"), [
    # --model given: the endpoint is still checked before the run, not found dead entry by entry
    (["--base-url", "http://127.0.0.1:9/v1", "--model", "m"], 1,
     ["cannot reach http://127.0.0.1:9/v1 (connection refused)", "--base-url"]),
    (["--base-url", "LIVE", "--compare", "http://127.0.0.1:9"], 1,
     ["cannot reach http://127.0.0.1:9/v1", "check --compare"]),
    (["--base-url", "127.0.0.1:8000"], 2, ["--base-url '127.0.0.1:8000' must start with http://"]),
    (["--base-url", "LOCKED"], 1, ["HTTP 401: Invalid API key.", "check --api-key"]),
    (["--base-url", "LIVE", "--dataset", "bank=/nonexistent/bank.jsonl", "--categories", "none"], 2,
     ["/nonexistent/bank.jsonl"]),
])
def test_unusable_endpoints_and_inputs_are_one_line_naming_what_to_check(refusers, tmp_path, capsys, args, status,
                                                                         words):
    locked = ThreadingHTTPServer(("127.0.0.1", 0), Locked)
    threading.Thread(target=locked.serve_forever, daemon=True).start()
    try:
        args = [{"LIVE": refusers[0], "LOCKED": f"http://127.0.0.1:{locked.server_address[1]}"}.get(a, a)
                for a in args]
        out = tmp_path / "eval"
        categories = [] if "--categories" in args else ["--categories", "irrelevance"]
        assert main(["eval", *args, *categories, "--limit", "1", "--output", str(out)]) == status
    finally:
        locked.shutdown()
    err = capsys.readouterr().err
    assert err.startswith("hammer eval: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err
    assert not out.exists()  # nothing written for a run that could not start


@pytest.mark.parametrize(("line", "words"), [
    ("x", ["rows.jsonl:2: not JSON"]),
    ('{"tools": [], "answers": []}', ["rows.jsonl:2: missing field 'query'"]),
    ("[1]", ["rows.jsonl:2: a row must be a JSON object"]),
    ('{"query": "q", "answers": [{"arguments": {}}]}', ["rows.jsonl:2: missing field 'name'"]),
])
def test_a_malformed_data_set_row_is_named(tmp_path, capsys, line, words):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"query": "q", "tools": [], "answers": []}\n' + line + "\n")
    assert main(["eval", "--base-url", "http://127.0.0.1:9", "--dataset", f"bank={path}", "--categories", "none",
                 "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hammer eval: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err


@pytest.mark.parametrize("flags", [["--workers", "0"], ["--limit", "0"], ["--timeout", "0"], ["--retries", "-1"],
                                   ["--first"]])
def test_out_of_range_numbers_are_refused_before_connecting(tmp_path, capsys, flags):
    assert main(["eval", "--base-url", "http://127.0.0.1:9", *flags, "--output", str(tmp_path)]) == 2
    assert flags[0] in capsys.readouterr().err
