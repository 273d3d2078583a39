"""Local consistency of one normalized schema node: caps, impossible types, enum filtering.

``finish`` runs after a node's children are normalized and again after ``allOf`` merges, so
contradictions found late (``minLength`` above ``maxLength`` after a merge) still turn into
``False`` ("no value"), which the parent drops when it may (an optional property, an
``anyOf`` branch) and rejects when it must (the root, a required property).
"""

from __future__ import annotations

import json
import math
from typing import Any

import jsonschema
from hammer.server.grammar.keywords import FORMATS
from hammer.server.grammar.limits import SchemaLimits, SchemaRejected, child
from hammer.server.grammar.validate import safe_validator

ALL_TYPES = frozenset({"null", "boolean", "object", "array", "string", "number"})
FAMILIES = {
    "string": frozenset({"minLength", "maxLength", "pattern", "format"}),
    "array": frozenset({"items", "prefixItems", "minItems", "maxItems", "uniqueItems"}),
    "object": frozenset({"properties", "required", "additionalProperties", "minProperties", "maxProperties"}),
    "number": frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}),
}


def declared_types(node: dict[str, Any]) -> set[str] | None:
    """The ``type`` keyword as a set (``None`` when absent: every type).

    >>> sorted(declared_types({"type": ["integer", "null"]}))
    ['integer', 'null']
    """
    value = node.get("type")
    if value is None:
        return None
    return {value} if isinstance(value, str) else set(value)


def allows(types: set[str] | None, family: str) -> bool:
    return types is None or family in types or (family == "number" and "integer" in types)


def canon(value: Any) -> str:
    """A key under which JSON values jsonschema calls equal compare equal (1 == 1.0, not True).

    >>> canon(1.0) == canon(1), canon(True) == canon(1)
    (True, False)
    """
    return json.dumps(_plain(value), sort_keys=True)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def int_bounds(node: dict[str, Any]) -> tuple[int | None, int | None]:
    """Integer range allowed by minimum/maximum/exclusive*.

    >>> int_bounds({"minimum": 1.5, "exclusiveMaximum": 10})
    (2, 9)
    """
    lo: int | None = None
    hi: int | None = None
    if "minimum" in node:
        lo = math.ceil(node["minimum"])
    if "exclusiveMinimum" in node:
        candidate = math.floor(node["exclusiveMinimum"]) + 1
        lo = candidate if lo is None else max(lo, candidate)
    if "maximum" in node:
        hi = math.floor(node["maximum"])
    if "exclusiveMaximum" in node:
        candidate = math.ceil(node["exclusiveMaximum"]) - 1
        hi = candidate if hi is None else min(hi, candidate)
    return lo, hi


def finish(node: Any, limits: SchemaLimits, pointer: str) -> Any:
    """Apply caps, drop what cannot apply, turn contradictions into ``False``."""
    if not isinstance(node, dict) or "anyOf" in node or "oneOf" in node:
        return node
    node = dict(node)
    types = declared_types(node)
    if types is not None:
        if "number" in types:
            types.discard("integer")
        impossible = {t for t in types if _impossible(node, t, limits, pointer)}
        types -= impossible
        if not types:
            return False
    else:
        impossible = {t for t in ALL_TYPES if _impossible(node, t, limits, pointer)}
        if impossible:
            types = set(ALL_TYPES) - impossible
    if types is not None:
        node["type"] = sorted(types)[0] if len(types) == 1 else sorted(types)
    for family, keys in FAMILIES.items():
        if not allows(types, family):
            for key in keys & node.keys():
                del node[key]
    _cap(node, limits, pointer)
    if "enum" in node or "const" in node:
        return _only_valid_values(node, limits, pointer)
    return node


def _impossible(node: dict[str, Any], family: str, limits: SchemaLimits, pointer: str) -> bool:
    """Whether no value of this type satisfies the node (rejecting what we refuse to try)."""
    if family == "string":
        low, high = node.get("minLength", 0), node.get("maxLength")
        if low > limits.max_string_length:
            raise SchemaRejected(f"minLength {low} is above the limit of {limits.max_string_length}",
                                 child(pointer, "minLength"))
        return high is not None and low > high
    if family == "array":
        low, high = node.get("minItems", 0), node.get("maxItems")
        if low > limits.max_items:
            raise SchemaRejected(f"minItems {low} is above the limit of {limits.max_items}", child(pointer, "minItems"))
        prefix = node.get("prefixItems", [])
        # Positions past a `false` prefix entry (or past the prefix when items is false) cannot exist.
        longest = next((i for i, sub in enumerate(prefix) if sub is False), None)
        if longest is None and node.get("items", True) is False:
            longest = len(prefix)
        if longest is not None:
            high = longest if high is None else min(high, longest)
        return (high is not None and low > high) or any(sub is False for sub in prefix[:low])
    if family == "object":
        properties = node.get("properties", {})
        extra = node.get("additionalProperties", True)
        return any(properties.get(name, extra) is False for name in node.get("required", []))
    if family in ("number", "integer"):
        lo, hi = int_bounds(node)
        if family == "integer" or node.get("type") == "integer":
            return lo is not None and hi is not None and lo > hi
        low = max((node[k] for k in ("minimum", "exclusiveMinimum") if k in node), default=None)
        high = min((node[k] for k in ("maximum", "exclusiveMaximum") if k in node), default=None)
        if low is None or high is None:
            return False
        exclusive = "exclusiveMinimum" in node or "exclusiveMaximum" in node
        return low > high or (low == high and exclusive and (node.get("exclusiveMinimum") == low
                                                               or node.get("exclusiveMaximum") == high))
    return False


def _cap(node: dict[str, Any], limits: SchemaLimits, pointer: str) -> None:
    """Lower maxLength/maxItems to the decoding caps; refuse what no cap can make safe."""
    if node.get("maxLength", 0) > limits.max_string_length:
        node["maxLength"] = limits.max_string_length
    if node.get("maxItems", 0) > limits.max_items:
        node["maxItems"] = limits.max_items
    # uniqueItems: no grammar can say "not seen before"; pydantic sends it for every set[...], so
    # it is decoded without and checked after generation (a duplicate is reported as invalid).
    node.pop("uniqueItems", None)
    if "format" in node and node["format"] not in FORMATS:
        del node["format"]  # an annotation: jsonschema does not assert it
    properties = node.get("properties", {})
    if len(properties) > limits.max_properties:
        raise SchemaRejected(f"{len(properties)} properties, more than the limit of {limits.max_properties}",
                             child(pointer, "properties"))
    required = node.get("required", [])
    if node.get("minProperties", 0) <= len(set(required)):
        node.pop("minProperties", None)
    else:
        raise SchemaRejected("'minProperties' above the number of required properties is not supported",
                             child(pointer, "minProperties"))
    if "maxProperties" in node and properties:
        possible = {name for name, sub in properties.items() if sub is not False} | set(required)
        if len(possible) > node["maxProperties"]:
            raise SchemaRejected("'maxProperties' below the number of declared properties is not supported",
                                 child(pointer, "maxProperties"))
        del node["maxProperties"]


def _only_valid_values(node: dict[str, Any], limits: SchemaLimits, pointer: str) -> Any:
    """Replace a node with enum/const by the values that satisfy all of it (or ``False``)."""
    if "const" in node:
        candidates = [node["const"]]
    else:
        candidates = node["enum"]
        if len(candidates) > limits.max_enum:
            raise SchemaRejected(f"enum has {len(candidates)} values, more than the limit of {limits.max_enum}",
                                 child(pointer, "enum"))
    rest = {k: v for k, v in node.items() if k not in ("enum", "const")}
    allowed = {canon(v) for v in node["enum"]} if "const" in node and "enum" in node else None
    # Python's re backtracks: a pattern anywhere in the node is matched by our linear matcher
    # (building that validator costs more, so only then).
    validator = (safe_validator if '"pattern"' in json.dumps(rest) else jsonschema.Draft202012Validator)(rest)
    values: list[Any] = []
    seen: set[str] = set()
    for value in candidates:
        key = canon(value)
        if key in seen or (allowed is not None and key not in allowed):
            continue
        seen.add(key)
        if validator.is_valid(value):
            values.append(value)
    if not values:
        return False
    return {"const": values[0]} if len(values) == 1 else {"enum": values}
