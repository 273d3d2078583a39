"""Local data sets (API-Bank, ToolAlpaca, NexusRaven, Seal-Tools in xLAM layout) and their F1."""

from __future__ import annotations

import json

import pytest
from hammer.evaluation.client import Reply
from hammer.evaluation.f1 import exact_match, f1_scores
from hammer.evaluation.local_data import load_local
from hammer.evaluation.scoring import score


def test_f1_counts_names_and_arguments_as_multisets():
    expected = [{"f": {"a": 1, "b": "X"}}, {"f": {"a": 2}}]
    assert f1_scores([(expected, expected)]) == {"name_f1": 1.0, "argument_f1": 1.0}
    predicted = [{"f": {"a": 1, "b": "x "}}]  # one of two calls, strings normalised
    scores = f1_scores([(predicted, expected)])
    assert scores["name_f1"] == pytest.approx(2 / 3)  # tp 1, fn 1
    assert scores["argument_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1))  # tp 2, fn 1
    # a call where none is wanted is a false positive; 2.0 equals 2
    assert f1_scores([([{"g": {}}], [])])["name_f1"] == 0.0
    assert exact_match([{"f": {"a": 2.0}}], [{"f": {"a": 2}}]) and not exact_match([], [{"f": {}}])


def test_loader_accepts_xlam_json_strings_openai_tools_and_messages(tmp_path):
    path = tmp_path / "api_bank.jsonl"
    rows = [
        {"id": "w1", "query": "weather in Paris",
         "answers": '[{"name": "weather", "arguments": "{\\"city\\": \\"Paris\\"}"}]',
         "tools": json.dumps([{"name": "weather", "description": "w", "parameters": {
             "city": {"type": "str", "description": "c"}, "days": {"type": "int, optional", "description": "d"}}}])},
        {"messages": [{"role": "user", "content": "hi"}], "answers": [],
         "tools": [{"type": "function",
                    "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    first, second = load_local("api-bank", path)
    assert first.id == "api-bank_w1" and first.category == "api-bank" and first.scoring == "f1"
    assert first.messages == [{"role": "user", "content": "weather in Paris"}]
    schema = first.tools[0]["function"]["parameters"]
    assert schema["properties"]["city"]["type"] == "string" and schema["required"] == ["city"]
    assert first.answers == [{"weather": {"city": "Paris"}}]
    assert second.id == "api-bank_1"  # the row number when a row has no id
    assert second.tools == rows[1]["tools"] and second.answers == []
    assert len(load_local("x", path, limit=1)) == 1


def test_f1_entries_pass_on_exact_match_and_on_a_refusal_when_no_call_fits(tmp_path):
    path = tmp_path / "seal.json"
    path.write_text(json.dumps([{"query": "q", "tools": [{"name": "f", "description": "", "parameters": {}}],
                                 "answers": [{"name": "f", "arguments": {}}]},
                                {"query": "q", "tools": [], "answers": []}]))
    wanted, refusal = load_local("seal-tools", path)
    names = {"f": "f"}
    assert score(wanted, wanted.tools, names, Reply(tool_calls=[{"name": "f", "arguments": "{}"}])).passed
    assert not score(wanted, wanted.tools, names, Reply(content="no")).passed
    assert score(refusal, refusal.tools, {}, Reply(content="none fits")).passed
