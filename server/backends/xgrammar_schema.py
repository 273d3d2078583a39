"""A prepared JSON Schema as vLLM's xgrammar must get it to decode with llama.cpp's bounds.

xgrammar writes ``integer`` and ``number`` as unbounded digit runs, and a free-form value
(``{}``, ``{"type": "object"}``) as its own ``basic_any``, whose numbers, strings and arrays
are unbounded too: at temperature 0 a small model writes ``{"population": 1111111…`` until
``max_tokens``. llama.cpp's grammar (and ours, ``hammer.server.grammar``) caps integers at 16
digits. xgrammar turns ``minimum``/``maximum`` into exact digit ranges, so every number gets
bounds of ±(10^16 - 1) (a fraction then has at most 6 digits and no exponent, xgrammar's range
form), and every free-form value becomes a reference to one bounded "any JSON value" definition.
Pure functions on plain data: no vLLM import, so this runs and is tested anywhere.
"""

from __future__ import annotations

from typing import Any

from hammer.server.grammar import SchemaLimits
from hammer.server.grammar.integers import MAX_DIGITS

LIMIT = 10 ** MAX_DIGITS - 1
ANY = "hammer_any"
ANY_REF = {"$ref": f"#/$defs/{ANY}"}
# Every JSON type (integer is a number): what a node without "type" may be.
ALL_TYPES = ["string", "number", "boolean", "null", "array", "object"]
_SUBSCHEMA_LISTS = ("prefixItems", "anyOf", "oneOf", "allOf")


def bounded_schema(schema: dict[str, Any], limits: SchemaLimits) -> dict[str, Any]:
    """``schema`` (from ``checked_schema``) with every number bounded and every free-form value spelled out.

    >>> bounded_schema({"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}}, SchemaLimits())
    {'type': 'object', 'properties': {'n': {'type': 'integer', 'minimum': 0, 'maximum': 9999999999999999}}}
    >>> bounded_schema({"type": "object"}, SchemaLimits())["additionalProperties"]
    {'$ref': '#/$defs/hammer_any'}
    >>> bounded_schema({"type": "integer", "enum": [1, 10 ** 20]}, SchemaLimits())  # listed values stay
    {'type': 'integer', 'enum': [1, 100000000000000000000]}
    """
    walker = _Bounder(limits)
    bounded = walker.walk(schema)
    if walker.uses_any:
        bounded["$defs"] = {ANY: walker.walk(any_value())}
    return bounded


def any_value() -> dict[str, Any]:
    """Any JSON value, recursively, in the shape the walk then bounds."""
    return {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": ["boolean", "null"]},
                      {"type": "array", "items": ANY_REF}, {"type": "object", "additionalProperties": ANY_REF}]}


class _Bounder:
    def __init__(self, limits: SchemaLimits) -> None:
        self.limits = limits
        self.uses_any = False

    def walk(self, node: Any) -> Any:
        if not isinstance(node, dict):  # false: no value; left as it is
            return node
        if not node or node == ANY_REF:
            self.uses_any = True
            return dict(ANY_REF)
        out = dict(node)
        types = self.types(out)
        if types:
            self.bound(out, types)
        for key in ("items", "additionalProperties"):
            if key in out:
                out[key] = self.walk(out[key])
        if "properties" in out:
            out["properties"] = {name: self.walk(sub) for name, sub in out["properties"].items()}
        for key in _SUBSCHEMA_LISTS:
            if key in out:
                out[key] = [self.walk(sub) for sub in out[key]]
        return out

    @staticmethod
    def types(node: dict[str, Any]) -> list[str]:
        """The types to bound: none where ``enum``/``const`` list the values (already bounded) or the
        branches carry them; a node that constrains nothing by type gets all of them written out,
        because xgrammar ignores the other keywords of an untyped node and allows any value."""
        if "enum" in node or "const" in node:
            return []
        if "type" in node:
            return [node["type"]] if isinstance(node["type"], str) else list(node["type"])
        if any(key in node for key in ("anyOf", "oneOf", "allOf", "$ref")):
            return []
        node["type"] = list(ALL_TYPES)
        return ALL_TYPES

    def bound(self, node: dict[str, Any], types: list[str]) -> None:
        if "integer" in types or "number" in types:
            node["minimum"] = max(node.get("minimum", -LIMIT), -LIMIT)
            node["maximum"] = min(node.get("maximum", LIMIT), LIMIT)
        if "string" in types:
            node["maxLength"] = min(node.get("maxLength", self.limits.max_string_length),
                                    self.limits.max_string_length)
        if "array" in types:
            node["maxItems"] = min(node.get("maxItems", self.limits.max_items), self.limits.max_items)
            if "items" not in node and "prefixItems" not in node:
                node["items"] = {}
        if "object" in types and "properties" not in node and "additionalProperties" not in node:
            node["additionalProperties"] = {}
