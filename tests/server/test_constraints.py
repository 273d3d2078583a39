"""Tool validation, tool_choice resolution and the output schema."""

from __future__ import annotations

import jsonschema
import pytest
from hammer.server.constraints import (
    ToolMode,
    argument_errors,
    calls_schema,
    decoding_schema,
    plan_tools,
    response_format_schema,
)
from hammer.server.errors import InvalidRequest
from hammer.server.grammar import SchemaLimits
from hammer.server.protocol import NamedToolChoice, Tool
from hypothesis import given
from hypothesis import strategies as st

from tests.server.tools_fixtures import TOOLS

PARSED = [Tool.model_validate(t) for t in TOOLS]


def nested_object(depth: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


def plan(tool_choice=None, parallel=True, tools=PARSED):
    return plan_tools(tools, tool_choice, parallel, max_tools=8, limits=SchemaLimits(max_depth=6))


class TestPlanTools:
    @pytest.mark.parametrize("choice,mode", [(None, ToolMode.AUTO), ("auto", ToolMode.AUTO),
                                             ("required", ToolMode.REQUIRED), ("none", ToolMode.NONE)])
    def test_modes(self, choice, mode):
        assert plan(choice).mode == mode

    def test_named(self):
        p = plan(NamedToolChoice.model_validate({"type": "function", "function": {"name": "send_email"}}))
        assert p.mode == ToolMode.NAMED and p.forced_name == "send_email"

    @pytest.mark.parametrize("kwargs,param", [
        ({"tool_choice": NamedToolChoice.model_validate({"type": "function", "function": {"name": "nope"}})},
         "tool_choice"),
        ({"tool_choice": "required", "tools": None}, "tool_choice"),
        ({"tools": PARSED * 5}, "tools"),
        ({"tools": PARSED + PARSED[:1]}, "tools[2].function.name"),
    ])
    def test_rejections_name_the_parameter(self, kwargs, param):
        with pytest.raises(InvalidRequest) as info:
            plan(**kwargs)
        assert info.value.param == param

    @pytest.mark.parametrize("function,fragment", [
        ({"name": "has space", "parameters": {"type": "object"}}, "Invalid tool name"),
        ({"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "dict"}}}},
         "'type' must be one of"),
        ({"name": "f", "parameters": {"type": "string"}}, "type 'object'"),
        ({"name": "f", "parameters": nested_object(8)}, "deep"),
        ({"name": "f", "parameters": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}},
                                      "$defs": {"A": {"type": "object", "properties": {"b": {"$ref": "#/$defs/A"}}}}}},
         "#/\\$defs/A"),
        ({"name": "f", "parameters": {"type": "object", "properties": {"a": {"$ref": "https://x.org/s.json"}}}},
         "https://x.org"),
        ({"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "string",
                                                                          "pattern": "^(a)\\1$"}}}}, "pattern"),
    ])
    def test_bad_tools(self, function, fragment):
        with pytest.raises(InvalidRequest, match=fragment) as info:
            plan(tools=[Tool.model_validate({"type": "function", "function": function})])
        assert info.value.param in ("tools[0].function.name", "tools[0].function.parameters")

    def test_refs_resolve_against_each_tools_own_root(self):
        nested = Tool.model_validate({"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"where": {"$ref": "#/$defs/Place"}}, "required": ["where"],
            "$defs": {"Place": {"type": "object", "properties": {"city": {"type": "string"}},
                                "required": ["city"]}}}}})
        p = plan(tools=[nested, *PARSED])
        assert p.prompt_functions()[0]["parameters"]["properties"]["where"]["properties"]["city"] == {"type": "string"}
        schema = calls_schema(p, max_calls=4, max_string_length=50)
        assert "$ref" not in str(schema)
        jsonschema.validate([{"name": "f", "arguments": {"where": {"city": "Oslo"}}}], schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate([{"name": "f", "arguments": {"where": {"town": "Oslo"}}}], schema)


class TestCallsSchema:
    def test_auto_allows_empty_list_and_any_tool(self):
        schema = calls_schema(plan(), max_calls=4, max_string_length=50)
        jsonschema.validate([], schema)
        jsonschema.validate([{"name": "get_weather", "arguments": {"city": "Oslo"}},
                             {"name": "send_email", "arguments": {"to": "a", "subject": "b", "body": "c"}}], schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate([{"name": "launch", "arguments": {}}], schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate([{"name": "get_weather", "arguments": {"city": "Oslo", "extra": 1}}], schema)

    def test_required_needs_a_call_and_parallel_false_caps_at_one(self):
        schema = calls_schema(plan("required", parallel=False), max_calls=4, max_string_length=50)
        call = {"name": "get_weather", "arguments": {"city": "Oslo"}}
        for bad in ([], [call, call]):
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate(bad, schema)
        jsonschema.validate([call], schema)

    def test_named_allows_only_that_tool(self):
        choice = NamedToolChoice.model_validate({"type": "function", "function": {"name": "send_email"}})
        schema = calls_schema(plan(choice), max_calls=4, max_string_length=50)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate([{"name": "get_weather", "arguments": {"city": "Oslo"}}], schema)

    def test_strings_are_bounded(self):
        schema = calls_schema(plan(), max_calls=4, max_string_length=5)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate([{"name": "get_weather", "arguments": {"city": "Oslo-Oslo"}}], schema)


class TestDecodingSchema:
    @given(st.integers(min_value=1, max_value=100))
    def test_never_loosens_a_tighter_bound(self, limit):
        tightened = decoding_schema({"type": "string", "maxLength": 3}, limit)
        assert tightened["maxLength"] == min(3, limit)

    def test_enum_const_and_pattern_strings_are_left_alone(self):
        for node in ({"type": "string", "enum": ["a"]}, {"type": "string", "pattern": "^a+$"}):
            assert decoding_schema(node, 5) == node

    def test_nested_objects_and_arrays(self):
        schema = {"type": "object", "properties": {"xs": {"type": "array", "items": {
            "type": "object", "properties": {"s": {"type": "string"}}}}}}
        out = decoding_schema(schema, 7)
        item = out["properties"]["xs"]["items"]
        assert item["additionalProperties"] is False and item["properties"]["s"]["maxLength"] == 7
        assert "maxLength" not in schema["properties"]["xs"]["items"]["properties"]["s"], "input not mutated"


class TestArgumentErrors:
    def test_reports_the_failing_path(self):
        function = PARSED[0].function
        assert argument_errors(function, {"city": "Oslo"}) is None
        assert "required" in argument_errors(function, {})
        assert argument_errors(function, {"city": "Oslo", "unit": "kelvin"}).startswith("unit:")


class TestResponseFormat:
    def test_kinds(self):
        limits = SchemaLimits()
        assert response_format_schema("json_object", None, limits) == {"type": "object"}
        assert response_format_schema("text", None, limits) is None
        with pytest.raises(InvalidRequest):
            response_format_schema("json_schema", {"type": 12}, limits)

    def test_depth_is_checked_before_anything_recurses(self):
        schema: dict = {"type": "string"}
        for _ in range(2000):
            schema = {"type": "object", "properties": {"x": schema}}
        with pytest.raises(InvalidRequest) as info:
            response_format_schema("json_schema", schema, SchemaLimits())
        assert info.value.param == "response_format.json_schema.schema"
