"""hammer.server.grammar.gbnf: the grammar text, one class per function (engine checks: test_grammar_engine)."""

from __future__ import annotations

import re
import time

import pytest
from hammer.server.grammar import SchemaLimits, SchemaRejected, schema_gbnf, sequence_gbnf

RULE_NAME = re.compile(r"^([a-zA-Z0-9-]+) ::= ", re.M)


def rules(grammar: str) -> dict[str, str]:
    return {line.split(" ::= ", 1)[0]: line.split(" ::= ", 1)[1] for line in grammar.splitlines()}


class TestSchemaGbnf:
    @pytest.mark.parametrize("schema", [
        {"enum": ["a\"b"]}, {"enum": ["\u0000"]}, {"const": "x\u0000\"\\\n\u0001é😀"},
        {"type": "object", "properties": {"\u0000 \"weird\" name\n": {"type": "string"}, "é": {}}},
    ])
    def test_pure_ascii_no_nul_valid_rule_names(self, schema: dict) -> None:
        grammar = schema_gbnf(schema)
        assert grammar.isascii() and "\x00" not in grammar
        assert all(RULE_NAME.match(line) for line in grammar.splitlines())

    def test_enum_values_are_their_exact_json_text(self) -> None:
        grammar = schema_gbnf({"enum": ["a\"b", "\u0000", "x\ny", 1.5, None]})
        body = rules(grammar)["value"]
        for text in ('"\\"a\\\\\\"b\\""', '"\\"\\\\u0000\\""', '"\\"x\\\\ny\\""', '"1.5"', '"null"'):
            assert text in body

    def test_free_strings_are_capped_with_counted_repetition(self) -> None:
        grammar = schema_gbnf({"type": "string"}, SchemaLimits(max_string_length=100))
        assert "char{0,100}" in grammar and "char?" not in grammar

    def test_declared_properties_required_in_order_no_extra_keys(self) -> None:
        grammar = schema_gbnf({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "null"}},
                               "required": ["b"]})
        assert rules(grammar)["value-obj"].startswith('"{" space ("\\"a\\"" space ":" space integer value-rest')
        assert "value-rest ::= \",\" space \"\\\"b\\\"\" space \":\" space null" in grammar
        assert "string" not in grammar  # no free keys

    def test_integer_range(self) -> None:
        grammar = schema_gbnf({"type": "integer", "minimum": 1, "maximum": 12})
        assert rules(grammar)["value-int"] == '([1-9] | "1" [0-2]) space'

    def test_identical_rules_are_written_once(self) -> None:
        tool = {"type": "object", "properties": {"s": {"type": "string", "maxLength": 5}}}
        grammar = schema_gbnf({"anyOf": [tool, tool, {"type": "array", "items": tool}]})
        assert grammar.count("char{0,5}") == 1

    def test_grammar_size_limit(self) -> None:
        schema = {"enum": [f"value number {i}" for i in range(1000)]}
        with pytest.raises(SchemaRejected, match="larger than"):
            schema_gbnf(schema, SchemaLimits(max_grammar_bytes=8 * 1024))

    def test_items_false_and_prefix(self) -> None:
        grammar = schema_gbnf({"type": "array", "prefixItems": [{"type": "null"}], "items": False})
        assert rules(grammar)["value-arr"] == '"[" space (null)? "]" space'

    def test_rejections_pass_through(self) -> None:
        with pytest.raises(SchemaRejected):
            schema_gbnf({"type": "string", "pattern": "^(a)\\1$"})


class TestSequenceGbnf:
    def test_root_is_prefix_value_suffix(self) -> None:
        grammar = sequence_gbnf("```\n", {"type": "null"}, "\n```")
        assert grammar.splitlines()[0] == 'root ::= "```\\n" null "\\n```"'

    def test_typical_ten_tool_schema_is_fast(self) -> None:
        tool = {"type": "object", "properties": {
            "city": {"type": "string"}, "unit": {"enum": ["c", "f"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 14},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
            "code": {"type": "string", "pattern": "^[A-Z]{3}$"}}, "required": ["city"]}
        schema = {"type": "array", "maxItems": 8, "items": {"anyOf": [
            {"type": "object", "properties": {"name": {"const": f"tool_{i}"}, "arguments": tool},
             "required": ["name", "arguments"], "additionalProperties": False} for i in range(10)]}}
        sequence_gbnf("```\n", schema, "\n```")
        start = time.perf_counter()
        for _ in range(10):
            sequence_gbnf("```\n", schema, "\n```")
        assert (time.perf_counter() - start) / 10 < 0.05  # ~10 ms alone; generous on 2 shared cores
