"""Schema preparation is bounded as a whole: expansions pay as they go, errors name what grew."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hammer.server.constraints import _MEMO, tool_schemas
from hammer.server.grammar import SchemaLimits, SchemaRejected, checked_schema, schema_gbnf
from hammer.server.grammar.memo import SchemaMemo, deep_size


def branch(i: int) -> dict[str, Any]:
    inner = [{"type": "object", "properties": {f"q{j}": {"type": "string"}}} for j in range(16)]
    return {"type": "object", "properties": {f"p{i}": {"anyOf": inner}}}


def bomb(tag: str = "") -> dict[str, Any]:
    """Issue 22's allOf of two anyOfs of 16 objects, each property again an anyOf of 16: 65,536 leaves."""
    return {"allOf": [{"anyOf": [branch(i) for i in range(16)]}, {"anyOf": [branch(i) for i in range(16)]}],
            "description": tag}


def test_an_allof_anyof_bomb_is_refused_naming_the_distribution_not_refs():
    with pytest.raises(SchemaRejected) as caught:
        checked_schema(bomb())
    assert caught.value.message == ("the schema is too large once its anyOf/oneOf alternatives are distributed over "
                                    "allOf: more than 1024 alternatives")
    assert "$ref" not in str(caught.value)


def test_ref_expansion_is_named_when_refs_grew():
    defs = {"d0": {"type": "string"}}
    for i in range(1, 12):
        defs[f"d{i}"] = {"type": "object", "properties": {"a": {"$ref": f"#/$defs/d{i - 1}"},
                                                          "b": {"$ref": f"#/$defs/d{i - 1}"}}}
    with pytest.raises(SchemaRejected, match=r"once its \$refs are expanded: more than 2000 subschemas"):
        checked_schema({"$defs": defs, "$ref": "#/$defs/d11"}, SchemaLimits(max_schema_nodes=2000))


def test_ref_copies_of_large_values_pay_in_bytes():
    schema = {"$defs": {"e": {"enum": ["v" * 1000, "w"]}},
              "type": "object", "properties": {f"p{i}": {"$ref": "#/$defs/e"} for i in range(200)}}
    with pytest.raises(SchemaRejected, match=r"once its \$refs are expanded: more than 100000 bytes of values"):
        checked_schema(schema, SchemaLimits(max_schema_bytes=100_000))


def test_merges_that_share_subschemas_pay_for_each_place_they_appear():
    # Each level distributes 8 alternatives over one object whose property is the level below: the
    # 8 merged objects share that property's subschema, so the written schema grows 8-fold a level
    # while the input and the nodes made stay small.
    node: dict[str, Any] = {"type": "string"}
    for _ in range(6):
        node = {"allOf": [{"anyOf": [{"type": "object", "required": [f"r{i}"]} for i in range(8)]},
                          {"type": "object", "properties": {"p": node}}]}
    assert len(json.dumps(node)) < 5000
    with pytest.raises(SchemaRejected, match="once its anyOf/oneOf alternatives are distributed over allOf: "
                                             "more than 20000 subschemas"):
        checked_schema(node)


def test_an_anyof_of_consts_counts_against_the_enum_limit():
    consts = {"anyOf": [{"const": i} for i in range(1025)]}
    with pytest.raises(SchemaRejected, match="1025 alternatives, more than the limit of 1024 values"):
        checked_schema(consts)
    nested = {"anyOf": [{"anyOf": [{"const": i} for i in range(600)]}, {"enum": list(range(600, 1200))}]}
    with pytest.raises(SchemaRejected, match="1200 alternatives"):
        checked_schema(nested)
    assert len(checked_schema({"anyOf": [{"const": i} for i in range(1024)]})["anyOf"]) == 1024


def test_rule_names_stay_unique_when_hints_share_a_base():
    schema = {"type": "object", "properties": {"x" * 100: {"anyOf": [{"const": i} for i in range(1000)]}},
              "required": ["x" * 100]}
    names = [line.split(" ::= ")[0] for line in schema_gbnf(schema).splitlines()]
    assert len(names) == len(set(names)) and len(names) > 1000


def test_an_enum_is_checked_against_its_pattern_without_backtracking():
    schema = {"type": "string", "pattern": "^(a+)+$", "enum": ["a" * 40 + "!", "aaa"]}
    assert checked_schema(schema) == {"const": "aaa"}


def test_the_memo_keeps_no_rejected_schema():
    kept = len(_MEMO)
    for i in range(5):
        with pytest.raises(SchemaRejected):
            tool_schemas(bomb(str(i)), SchemaLimits())
    assert len(_MEMO) == kept


def test_the_memo_is_bounded_by_what_its_entries_measure():
    memo: SchemaMemo[dict[str, Any]] = SchemaMemo(max_bytes=400_000)
    sizes = []
    for i in range(50):
        schema = {"type": "object", "properties": {f"p{i}": {"enum": ["v" * 1000] + list(range(500))}}}
        key = json.dumps(schema)
        value = memo.get(key, lambda: checked_schema(schema))
        sizes.append(deep_size(key, value))
    assert memo.bytes <= memo.max_bytes
    assert len(memo) == memo.max_bytes // sizes[-1]  # the most recent ones that fit, by measure
    assert memo.bytes == sum(sizes[-len(memo):])
