"""hammer.server.grammar.schema / refs / shape: preparing client schemas, one class per function."""

from __future__ import annotations

import time

import pytest
from hammer.server.grammar import SchemaLimits, SchemaRejected, checked_schema, resolve_refs
from hammer.server.grammar.shape import check_shape


def nested(depth: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "array", "items": schema}
    return schema


class TestCheckShape:
    def test_deep_nesting_is_rejected_without_recursion(self) -> None:
        schema: dict = {}
        for _ in range(100_000):  # far beyond Python's recursion limit
            schema = {"items": schema}
        with pytest.raises(SchemaRejected, match="nests more than"):
            check_shape(schema, SchemaLimits())

    def test_lone_surrogate_in_key_or_value(self) -> None:
        with pytest.raises(SchemaRejected, match="surrogate"):
            check_shape({"enum": ["\ud800"]}, SchemaLimits())
        with pytest.raises(SchemaRejected, match="surrogate") as info:
            check_shape({"properties": {"a\udc00": {}}}, SchemaLimits())
        assert info.value.pointer == "/properties"

    def test_nan_and_non_json(self) -> None:
        with pytest.raises(SchemaRejected, match="not a JSON number"):
            check_shape({"const": float("nan")}, SchemaLimits())
        with pytest.raises(SchemaRejected, match="not a JSON value"):
            check_shape({"const": {1, 2}}, SchemaLimits())

    def test_control_characters_and_nul_are_fine(self) -> None:
        check_shape({"enum": ["\x00", "\n", "\x01", 'a"b'], "properties": {"\x00": {}}}, SchemaLimits())


class TestResolveRefs:
    def test_defs_definitions_root_and_escapes(self) -> None:
        schema = {
            "$defs": {"a/b": {"type": "string"}, "c~d": {"type": "integer"}, "e f": {"type": "null"}},
            "definitions": {"x": {"type": "boolean"}},
            "properties": {
                "p": {"$ref": "#/$defs/a~1b"}, "q": {"$ref": "#/$defs/c~0d"},
                "r": {"$ref": "#/$defs/e%20f"}, "s": {"$ref": "#/definitions/x"},
            },
        }
        assert resolve_refs(schema) == {"properties": {
            "p": {"type": "string"}, "q": {"type": "integer"}, "r": {"type": "null"}, "s": {"type": "boolean"}}}

    def test_ref_with_siblings_is_a_conjunction(self) -> None:
        out = resolve_refs({"$defs": {"s": {"type": "string"}}, "$ref": "#/$defs/s", "maxLength": 3})
        assert out == {"allOf": [{"type": "string"}, {"maxLength": 3}]}

    @pytest.mark.parametrize("schema, needle", [
        ({"$ref": "#"}, "recursive"),
        ({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"items": {"$ref": "#/$defs/a"}}}, "$ref": "#/$defs/a"},
         "recursive"),
        ({"$ref": "https://example.com/s.json"}, "remote"),
        ({"$ref": "other.json#/x"}, "remote"),
        ({"$ref": "#/$defs/missing"}, "points to nothing"),
        ({"$ref": "#anchor"}, "JSON-pointer"),
    ])
    def test_rejected_refs(self, schema: dict, needle: str) -> None:
        with pytest.raises(SchemaRejected, match=needle) as info:
            resolve_refs(schema)
        assert "#" in info.value.message or needle == "remote"

    def test_property_named_ref_is_not_a_ref(self) -> None:
        schema = {"properties": {"$ref": {"type": "string"}}, "enum": [{"$ref": "x"}]}
        assert resolve_refs(schema) == schema

    def test_exponential_expansion_is_bounded(self) -> None:
        defs = {f"d{i}": {"anyOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]}
                for i in range(30)}
        defs["d30"] = {"type": "string"}
        with pytest.raises(SchemaRejected, match="too large"):
            resolve_refs({"$defs": defs, "$ref": "#/$defs/d0"})


class TestPrepareSchema:
    def test_reproducer_deep_nesting(self) -> None:
        with pytest.raises(SchemaRejected):
            checked_schema(nested(401))
        with pytest.raises(SchemaRejected, match="subschemas nest more than 16"):
            checked_schema(nested(17))
        assert checked_schema(nested(15))

    def test_reproducer_huge_min_length_and_min_items(self) -> None:
        with pytest.raises(SchemaRejected, match="minLength 1000000000") as info:
            checked_schema({"type": "string", "minLength": 1_000_000_000})
        assert info.value.pointer == "/minLength"
        with pytest.raises(SchemaRejected, match="minItems"):
            checked_schema({"type": "array", "minItems": 30_000_000})

    def test_max_length_and_max_items_are_capped(self) -> None:
        assert checked_schema({"type": "string", "maxLength": 10**9})["maxLength"] == 1024
        assert checked_schema({"type": "array", "maxItems": 10_000})["maxItems"] == 64

    def test_reproducer_huge_enum(self) -> None:
        with pytest.raises(SchemaRejected, match="enum has 100000 values"):
            checked_schema({"enum": [str(i) for i in range(100_000)]})

    @pytest.mark.parametrize("keyword, value", [
        ("not", {"type": "null"}), ("if", {}), ("dependentSchemas", {}), ("dependentRequired", {}),
        ("patternProperties", {}), ("propertyNames", {}), ("unevaluatedProperties", False),
        ("contains", {}), ("multipleOf", 2),
    ])
    def test_rejected_keywords_name_themselves(self, keyword: str, value: object) -> None:
        with pytest.raises(SchemaRejected) as info:
            checked_schema({"type": "object", "properties": {"a": {keyword: value}}})
        assert info.value.pointer == f"/properties/a/{keyword}"

    def test_unique_items_is_left_to_validation(self) -> None:
        # Pydantic sends it for every set[...]: refusing it would refuse those tools.
        assert checked_schema({"type": "array", "uniqueItems": True, "maxItems": 3}) == {"type": "array", "maxItems": 3}

    def test_annotations_are_dropped(self) -> None:
        schema = {"type": "string", "title": "t", "description": "d", "default": "x", "examples": ["y"],
                  "$schema": "https://json-schema.org/draft/2020-12/schema", "format": "email", "x-custom": 1}
        assert checked_schema(schema) == {"type": "string"}

    def test_false_subschemas(self) -> None:
        assert checked_schema({"type": "object", "properties": {"a": False, "b": {}}}) == \
            {"type": "object", "properties": {"a": False, "b": {}}}
        with pytest.raises(SchemaRejected, match="no value can match"):
            checked_schema(False)
        with pytest.raises(SchemaRejected, match="no value can match"):
            checked_schema({"anyOf": [False, {"type": "string", "enum": [1]}]})
        assert checked_schema({"anyOf": [False, {"type": "null"}]}) == {"type": "null"}
        assert checked_schema(True) == {} and checked_schema({}) == {}

    def test_enum_is_filtered_by_the_rest_of_the_node(self) -> None:
        assert checked_schema({"type": "string", "enum": ["a", 1, "bb", None], "maxLength": 1}) == {"const": "a"}
        assert checked_schema({"enum": [1, 1.0, True]}) == {"enum": [1, True]}

    def test_all_of_is_merged(self) -> None:
        schema = {"allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"a": {"maxLength": 3}, "b": {"type": "integer"}}, "required": ["b"]},
        ]}
        assert checked_schema(schema) == {
            "type": "object", "properties": {"a": {"type": "string", "maxLength": 3}, "b": {"type": "integer"}},
            "required": ["a", "b"]}

    def test_all_of_that_cannot_merge_exactly_is_rejected(self) -> None:
        with pytest.raises(SchemaRejected, match="two different patterns"):
            checked_schema({"allOf": [{"pattern": "^a"}, {"pattern": "b$"}]})

    def test_siblings_are_distributed_into_any_of(self) -> None:
        schema = {"type": "object", "required": ["k"], "anyOf": [
            {"properties": {"k": {"const": "x"}}}, {"properties": {"k": {"const": "y"}}}]}
        out = checked_schema(schema)
        assert [b["properties"]["k"] for b in out["anyOf"]] == [{"const": "x"}, {"const": "y"}]
        assert all(b["required"] == ["k"] and b["type"] == "object" for b in out["anyOf"])

    def test_integer_range_contradiction_is_no_value(self) -> None:
        with pytest.raises(SchemaRejected, match="no value"):
            checked_schema({"type": "integer", "minimum": 5, "exclusiveMaximum": 5})

    def test_bad_keyword_values_are_rejected_not_crashes(self) -> None:
        for schema in ({"minLength": "x"}, {"type": "strin"}, {"required": [1]}, {"enum": 3},
                       {"pattern": 5}, {"anyOf": []}, {"items": [{}]}, {"properties": []}):
            with pytest.raises(SchemaRejected):
                checked_schema(schema)

    def test_typical_tool_schema_is_fast(self) -> None:
        tool = {"type": "object", "properties": {
            "city": {"type": "string", "description": "City"}, "unit": {"enum": ["c", "f"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 14},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
            "when": {"type": "string", "format": "date"}}, "required": ["city"]}
        schema = {"type": "array", "items": {"anyOf": [
            {"type": "object", "properties": {"name": {"const": f"tool_{i}"}, "arguments": tool},
             "required": ["name", "arguments"], "additionalProperties": False} for i in range(10)]}}
        start = time.perf_counter()
        for _ in range(10):
            checked_schema(schema)
        assert (time.perf_counter() - start) / 10 < 0.05  # generous: 2 shared cores
