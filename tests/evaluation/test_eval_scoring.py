"""BFCL's AST rules on hand-made replies: each case has the verdict BFCL gives it."""

from __future__ import annotations

import json

import pytest
from hammer.evaluation.bfcl_tools import to_openai_tools
from hammer.evaluation.client import Reply
from hammer.evaluation.entries import Entry
from hammer.evaluation.scoring import score

AREA = {"name": "geometry.area", "description": "Area of a rectangle.", "parameters": {
    "type": "dict", "required": ["width", "height"], "properties": {
        "width": {"type": "integer", "description": "width"},
        "height": {"type": "float", "description": "height"},
        "unit": {"type": "string", "description": "unit of length"}}}}
WEATHER = {"name": "weather", "description": "Weather in a city.", "parameters": {
    "type": "dict", "required": ["city"], "properties": {"city": {"type": "string", "description": "city"}}}}


def entry(category: str, functions: list, answers: list, scoring: str = "ast") -> Entry:
    return Entry(id=f"{category}_0", category=category, messages=[{"role": "user", "content": "q"}],
                 functions=functions, answers=answers, scoring=scoring)


def verdict(e: Entry, *calls: tuple[str, dict | str], error: str | None = None):
    tools, names = to_openai_tools(e.functions)
    reply = Reply(tool_calls=[{"name": n, "arguments": a if isinstance(a, str) else json.dumps(a)} for n, a in calls],
                  error=error)
    return score(e, tools, names, reply)


SIMPLE = entry("simple_python", [AREA],
               [{"geometry.area": {"width": [3], "height": [2.5], "unit": ["m", "meters", ""]}}])


def test_right_call_passes_with_the_underscored_name_mapped_back():
    v = verdict(SIMPLE, ("geometry_area", {"width": 3, "height": 2.5, "unit": "Meters"}))
    assert v.passed and v.calls == [{"geometry.area": {"width": 3, "height": 2.5, "unit": "Meters"}}]
    assert (v.calls_total, v.calls_valid) == (1, 1)


def test_optional_parameter_may_be_left_out_and_int_counts_as_float():
    assert verdict(SIMPLE, ("geometry_area", {"width": 3, "height": 2})).passed is False  # 2 != 2.5
    assert verdict(entry("simple_python", [AREA], [{"geometry.area": {"width": [3], "height": [2.0], "unit": [""]}}]),
                   ("geometry_area", {"width": 3, "height": 2})).passed


@pytest.mark.parametrize(("arguments", "error_type"), [
    ({"width": "3", "height": 2.5}, "type_error:simple"),
    ({"width": 3}, "simple_function_checker:missing_required"),
    ({"width": 3, "height": 2.5, "color": "red"}, "simple_function_checker:unexpected_param"),
    ({"width": 4, "height": 2.5}, "value_error:others"),
    ({"width": 3, "height": 2.5, "unit": "feet"}, "value_error:string"),
])
def test_wrong_calls_fail_with_bfcls_error_type(arguments, error_type):
    v = verdict(SIMPLE, ("geometry_area", arguments))
    assert not v.passed and v.error_type == error_type


def test_schema_validity_counts_a_wrongly_typed_call_as_invalid():
    v = verdict(SIMPLE, ("geometry_area", {"width": "3", "height": 2.5}))
    assert (v.calls_total, v.calls_valid) == (1, 0)


def test_wrong_function_and_wrong_count():
    multiple = entry("multiple", [AREA, WEATHER], [{"weather": {"city": ["Paris"]}}])
    assert verdict(multiple, ("weather", {"city": "paris"})).passed
    assert verdict(multiple, ("geometry_area", {"width": 3, "height": 2.5})).error_type == \
        "simple_function_checker:wrong_func_name"
    assert verdict(multiple, ("weather", {"city": "Paris"}), ("weather", {"city": "Paris"})).error_type == \
        "multiple_function_checker:wrong_count"


def test_parallel_calls_match_in_any_order_but_each_answer_once():
    parallel = entry("parallel", [WEATHER], [{"weather": {"city": ["Paris"]}}, {"weather": {"city": ["Rome"]}}])
    assert verdict(parallel, ("weather", {"city": "Rome"}), ("weather", {"city": "Paris"})).passed
    twice = verdict(parallel, ("weather", {"city": "Rome"}), ("weather", {"city": "Rome"}))
    assert not twice.passed and twice.error_type == "parallel_function_checker_no_order:cannot_find_match"
    assert verdict(parallel, ("weather", {"city": "Rome"})).error_type == \
        "parallel_function_checker_no_order:wrong_count"


def test_irrelevance_passes_only_without_a_call():
    irrelevant = entry("irrelevance", [WEATHER], [], scoring="irrelevance")
    assert verdict(irrelevant).passed
    called = verdict(irrelevant, ("weather", {"city": "Paris"}))
    assert not called.passed and called.error_type == "irrelevance_error:decoder_success"


def test_relevance_needs_a_call():
    relevant = entry("live_relevance", [WEATHER], [], scoring="relevance")
    assert verdict(relevant, ("weather", {"city": "x"})).passed and not verdict(relevant).passed


def test_arguments_that_are_not_json_fail_the_ast_check():
    v = verdict(SIMPLE, ("geometry_area", '{"width": 3,'))
    assert not v.passed and v.error_type == "ast_decoder:decoder_failed" and v.calls_valid == 0


def test_no_call_fails_an_ast_category():
    assert verdict(SIMPLE).error_type == "ast_decoder:no_call"


@pytest.mark.parametrize("category", ["irrelevance", "simple_python"])
def test_a_request_error_is_never_a_pass(category):
    e = entry(category, [WEATHER], [], scoring="irrelevance") if category == "irrelevance" else SIMPLE
    v = verdict(e, error="timeout")
    assert not v.passed and v.error_type == "request_error"


def test_nested_dict_and_list_of_dicts():
    fn = {"name": "book", "description": "", "parameters": {
        "type": "dict", "required": ["guest", "rooms"], "properties": {
            "guest": {"type": "dict", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}},
            "rooms": {"type": "array", "items": {"type": "dict", "properties": {"beds": {"type": "integer"}}}}}}}
    e = entry("simple_python", [fn], [{"book": {"guest": [{"name": ["Ann Lee"], "age": [30, ""]}],
                                               "rooms": [[{"beds": [2]}, {"beds": [1]}]]}}])
    assert verdict(e, ("book", {"guest": {"name": "ann lee"}, "rooms": [{"beds": 2}, {"beds": 1}]})).passed
    assert verdict(e, ("book", {"guest": {"name": "Ann Lee"}, "rooms": [{"beds": 1}, {"beds": 2}]})).error_type == \
        "value_error:dict_value"
