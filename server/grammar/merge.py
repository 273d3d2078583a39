"""``allOf`` by merging: the conjunction of two normalized schemas as one schema, or a rejection.

Merging is exact (the result accepts exactly what both accept) for the keywords handled
here; where it cannot be (two different patterns, anyOf mixed with oneOf) it refuses.
"""

from __future__ import annotations

from typing import Any

from hammer.server.grammar.keywords import FORMATS, SUBSCHEMA, SUBSCHEMA_LIST, SUBSCHEMA_MAP
from hammer.server.grammar.limits import Budget, SchemaLimits, SchemaRejected
from hammer.server.grammar.simplify import canon, declared_types, finish

# More alternatives than this from multiplying anyOf branches is refused.
MAX_BRANCHES = 256
MERGED = "its allOf parts are merged"
DISTRIBUTED = "its anyOf/oneOf alternatives are distributed over allOf"
_CHILDREN = SUBSCHEMA | SUBSCHEMA_MAP | SUBSCHEMA_LIST


def budget_for(limits: SchemaLimits) -> Budget:
    """The budget of a schema checked for decoding: its values become grammar text, hence the bytes."""
    return Budget(limits.max_schema_nodes, 4 * limits.max_grammar_bytes, alternatives=limits.max_enum)
_LOWER = ("minLength", "minItems", "minProperties", "minimum", "exclusiveMinimum")
_UPPER = ("maxLength", "maxItems", "maxProperties", "maximum", "exclusiveMaximum")


def merge(a: Any, b: Any, limits: SchemaLimits, pointer: str, budget: Budget | None = None) -> Any:
    """One schema accepting exactly what both ``a`` and ``b`` accept; every node it makes is paid
    for from ``budget`` (one preparation's, shared by all its merges).

    >>> merge({"type": ["string", "null"], "minLength": 2}, {"type": "string", "maxLength": 5}, SchemaLimits(), "")
    {'type': 'string', 'minLength': 2, 'maxLength': 5}
    >>> merge({"type": "string"}, {"type": "integer"}, SchemaLimits(), "")
    False
    """
    budget = budget or budget_for(limits)
    if a is True or a == {} or b is False:
        return b
    if b is True or b == {} or a is False:
        return a
    kind_a = _choice(a)
    kind_b = _choice(b)
    if kind_a and kind_b:
        if kind_a != kind_b:
            raise SchemaRejected("cannot combine 'anyOf' with 'oneOf' in 'allOf'", pointer)
        if len(a[kind_a]) * len(b[kind_b]) > MAX_BRANCHES:
            raise SchemaRejected(f"combining these alternatives gives more than {MAX_BRANCHES} branches", pointer)
        budget.distribute(len(a[kind_a]) * len(b[kind_b]), DISTRIBUTED, pointer)
        return _paid(choice(kind_a, [merge(x, y, limits, pointer, budget) for x in a[kind_a] for y in b[kind_b]]),
                     budget, DISTRIBUTED, pointer)
    if kind_a or kind_b:
        alternatives, other = (a, b) if kind_a else (b, a)
        kind = kind_a or kind_b
        budget.distribute(len(alternatives[kind]), DISTRIBUTED, pointer)
        return _paid(choice(kind, [merge(x, other, limits, pointer, budget) for x in alternatives[kind]]),
                     budget, DISTRIBUTED, pointer)
    return _paid(finish(_merge_plain(a, b, limits, pointer, budget), limits, pointer), budget, MERGED, pointer)


def _paid(node: Any, budget: Budget, grew: str, pointer: str) -> Any:
    budget.made(node, grew, pointer, _CHILDREN)
    return node


def choice(kind: str, branches: list[Any]) -> Any:
    """``{kind: branches}`` without ``false`` branches; one branch stands alone; none is ``False``."""
    kept = [b for b in branches if b is not False]
    if not kept:
        return False
    if any(b is True or b == {} for b in kept) and kind == "anyOf":
        return {}
    return kept[0] if len(kept) == 1 else {kind: kept}


def _choice(node: dict[str, Any]) -> str | None:
    return "anyOf" if "anyOf" in node else "oneOf" if "oneOf" in node else None


def _merge_plain(a: dict[str, Any], b: dict[str, Any], limits: SchemaLimits, pointer: str, budget: Budget) -> Any:
    out: dict[str, Any] = {}
    types = _merge_types(declared_types(a), declared_types(b))
    if types is not None:
        if not types:
            return False
        out["type"] = sorted(types)[0] if len(types) == 1 else sorted(types)
    _merge_objects(a, b, out, limits, pointer, budget)
    _merge_arrays(a, b, out, limits, pointer, budget)
    for key in _LOWER:
        values = [s[key] for s in (a, b) if key in s]
        if values:
            out[key] = max(values)
    for key in _UPPER:
        values = [s[key] for s in (a, b) if key in s]
        if values:
            out[key] = min(values)
    if "enum" in a and "enum" in b:
        keep = {canon(v) for v in b["enum"]}
        out["enum"] = [v for v in a["enum"] if canon(v) in keep]
    elif "enum" in a or "enum" in b:
        out["enum"] = a.get("enum", b.get("enum"))
    if "const" in a and "const" in b and canon(a["const"]) != canon(b["const"]):
        return False
    if "const" in a or "const" in b:
        out["const"] = a["const"] if "const" in a else b["const"]
    if a.get("pattern", b.get("pattern")) != b.get("pattern", a.get("pattern")):
        raise SchemaRejected("cannot combine two different patterns for one string", pointer)
    if "pattern" in a or "pattern" in b:
        out["pattern"] = a.get("pattern", b.get("pattern"))
    formats = {s["format"] for s in (a, b) if s.get("format") in FORMATS}
    if len(formats) > 1:
        raise SchemaRejected(f"cannot combine formats {sorted(formats)}", pointer)
    if formats:
        out["format"] = formats.pop()
    if a.get("uniqueItems") or b.get("uniqueItems"):
        out["uniqueItems"] = True
    return out


def _merge_types(a: set[str] | None, b: set[str] | None) -> set[str] | None:
    if a is None or b is None:
        return b if a is None else a
    both = a & b
    if "integer" in a and "number" in b or "number" in a and "integer" in b:
        both.add("integer")
    if "number" in both:
        both.discard("integer")
    return both


def _merge_objects(a: dict[str, Any], b: dict[str, Any], out: dict[str, Any], limits: SchemaLimits,
                   pointer: str, budget: Budget) -> None:
    # additionalProperties of one side governs the other side's extra names, so each name
    # merges what both sides say about it.
    extra_a = a.get("additionalProperties", True)
    extra_b = b.get("additionalProperties", True)
    props_a = a.get("properties", {})
    props_b = b.get("properties", {})
    names = list(props_a) + [n for n in props_b if n not in props_a]
    if names:
        out["properties"] = {n: merge(props_a.get(n, extra_a), props_b.get(n, extra_b), limits, pointer, budget)
                             for n in names}
    if "additionalProperties" in a or "additionalProperties" in b:
        out["additionalProperties"] = merge(extra_a, extra_b, limits, pointer, budget)
    required = list(dict.fromkeys(a.get("required", []) + b.get("required", [])))
    if required:
        out["required"] = required


def _merge_arrays(a: dict[str, Any], b: dict[str, Any], out: dict[str, Any], limits: SchemaLimits,
                  pointer: str, budget: Budget) -> None:
    def at(s: dict[str, Any], i: int) -> Any:
        prefix = s.get("prefixItems", [])
        return prefix[i] if i < len(prefix) else s.get("items", True)

    length = max(len(a.get("prefixItems", [])), len(b.get("prefixItems", [])))
    if length:
        out["prefixItems"] = [merge(at(a, i), at(b, i), limits, pointer, budget) for i in range(length)]
    if "items" in a or "items" in b:
        out["items"] = merge(a.get("items", True), b.get("items", True), limits, pointer, budget)
