"""BFCL data from the wheel and its conversion to OpenAI tools."""

from __future__ import annotations

import pytest
from hammer.evaluation.bfcl_data import PYTHON_HINT, load_category
from hammer.evaluation.bfcl_tools import to_openai_tools

pytest.importorskip("bfcl_eval")


def test_each_category_reads_its_own_file_in_order():
    # "multiple" must not pick up BFCL_v4_parallel_multiple.json, nor "irrelevance" live_irrelevance
    multiple = load_category("multiple", limit=3, first=True)
    assert [e.id for e in multiple] == ["multiple_0", "multiple_1", "multiple_2"]
    assert load_category("irrelevance", limit=1, first=True)[0].id == "irrelevance_0"
    assert all(e.answers and e.scoring == "ast" for e in multiple)


def test_limit_draws_a_fixed_sample_spread_over_the_category():
    # the first entries are the easy ones: --limit 4 takes one from each quarter of the 200
    picked = [int(e.id.rsplit("_", 1)[1]) for e in load_category("multiple", limit=4)]
    assert [i // 50 for i in picked] == [0, 1, 2, 3]
    assert [e.id for e in load_category("multiple", limit=4)] == [f"multiple_{i}" for i in picked]
    other_seed = [int(e.id.rsplit("_", 1)[1]) for e in load_category("multiple", limit=4, seed=1)]
    assert other_seed != picked
    assert len(load_category("multiple")) == len(load_category("multiple", limit=10_000)) == 200


def test_entries_carry_messages_answers_and_bfcls_python_hint():
    e = load_category("simple_python", limit=1, first=True)[0]
    assert e.messages[0]["role"] == "user" and "triangle" in e.messages[0]["content"]
    assert e.functions[0]["description"].endswith(PYTHON_HINT)
    assert e.answers == [{"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}]
    assert load_category("irrelevance", limit=1)[0].answers == []


def test_unknown_category_is_refused():
    with pytest.raises(ValueError, match="unsupported"):
        load_category("multi_turn_base")


def test_bfcl_types_become_json_schema_the_way_bfcl_sends_them():
    tools, names = to_openai_tools([{"name": "a.b.c", "description": "d", "parameters": {
        "type": "dict", "required": ["x"], "properties": {
            "x": {"type": "float", "description": "x"},
            "t": {"type": "tuple", "items": {"type": "integer"}, "description": "t"},
            "o": {"type": "dict", "properties": {"k": {"type": "float", "description": "k"}}, "description": "o"},
            "anything": {"type": "any", "description": "a"},
            "untyped": {"description": "u"}}}}])
    function = tools[0]["function"]
    assert tools[0]["type"] == "function" and function["name"] == "a_b_c" and names == {"a_b_c": "a.b.c"}
    props = function["parameters"]["properties"]
    assert function["parameters"]["type"] == "object" and function["parameters"]["required"] == ["x"]
    assert props["x"] == {"type": "number", "format": "float", "description": "x This is a float type value."}
    assert props["t"] == {"type": "array", "items": {"type": "integer"}, "description": "t"}
    assert props["o"]["type"] == "object" and props["o"]["properties"]["k"]["type"] == "number"
    assert props["anything"]["type"] == props["untyped"]["type"] == "string"  # as BFCL sends them
