"""Client JSON Schema → a checked schema every later step can trust, or ``SchemaRejected``.

``checked_schema`` checks the raw JSON iteratively (depth, size, lone surrogates, NaN),
inlines local ``$ref``s, drops annotations, refuses what a grammar cannot enforce, merges
``allOf``, distributes siblings into ``anyOf``/``oneOf`` branches, applies the decoding caps,
filters ``enum``/``const`` to the values the rest of the node allows, and turns
contradictions into ``false`` (rejected where a value is mandatory). The result is a valid,
self-contained JSON Schema; the GBNF writer (and xgrammar) read it.

Keywords (JSON Schema 2020-12):

=========================  ========  ==========================================================
keyword                    handling  notes
=========================  ========  ==========================================================
type (string or list)      ENFORCED  integer ⊂ number
enum, const                ENFORCED  exact JSON text of each value that the rest allows
properties, required       ENFORCED  required in declared order, optional ones optionally
additionalProperties       ENFORCED  false/schema/true; objects with declared properties
                                     never get extra keys (a decoding choice, always valid)
items, prefixItems         ENFORCED  ``items: false`` allows only the prefix
minItems, maxItems         ENFORCED  maxItems capped to ``max_items`` (decoding cap);
                                     minItems above it rejected
minLength, maxLength       ENFORCED  the same with ``max_string_length``
pattern                    ENFORCED  the regex subset of ``hammer.server.grammar.regex``
format                     ENFORCED  date, time, date-time, uuid (when no pattern is given
                                     and the length bounds allow); other formats: annotation
minimum, maximum,          ENFORCED  for integers (exact ranges); for numbers with a
exclusiveMinimum/Maximum             fraction: left to post-validation
anyOf                      ENFORCED  alternatives; ``false`` branches dropped
oneOf                      ENFORCED  generated as anyOf: exact when branches are disjoint
                                     (different types or consts); overlapping branches are
                                     left to post-validation
allOf                      ENFORCED  merged into one schema; rejected where a merge cannot be
                                     exact (two different patterns, anyOf with oneOf)
uniqueItems                CHECKED   after generation only (pydantic sends it for sets): a
                                     duplicate item is reported as an invalid call
minProperties              ENFORCED  only when implied by ``required``; otherwise REJECTED
maxProperties              ENFORCED  as a key cap for free-form objects, or when the declared
                                     properties cannot exceed it; otherwise REJECTED
$ref                       ENFORCED  local refs inlined; recursive or remote refs REJECTED
title, description,        IGNORED   annotations: default, examples, $schema, $id, $comment,
...                                  $anchor, deprecated, readOnly, writeOnly, content*,
                                     minContains/maxContains (no contains), unknown keywords
not, if/then/else          REJECTED  cannot be enforced by a grammar
dependentSchemas,          REJECTED  not supported (dependencies, draft 7, too)
dependentRequired
patternProperties,         REJECTED  not supported
propertyNames
unevaluatedProperties,     REJECTED  not supported
unevaluatedItems
contains                   REJECTED  not supported
additionalItems            REJECTED  draft 7; use prefixItems/items
multipleOf                 REJECTED  cannot be enforced by a grammar
$dynamicRef, $recursiveRef REJECTED  not supported
=========================  ========  ==========================================================

``false`` subschemas: a property whose schema is false is never generated (rejected if it is
required), ``items: false`` allows only the prefix, an anyOf branch that is false is dropped;
a root with no possible value is rejected ("no value can match"). ``true``/``{}``: any value.
"""

from __future__ import annotations

from typing import Any

from hammer.server.grammar.keywords import (
    ANNOTATIONS,
    ENFORCED,
    REJECTED,
    SUBSCHEMA,
    SUBSCHEMA_LIST,
    SUBSCHEMA_MAP,
    TYPES,
)
from hammer.server.grammar.limits import Budget, SchemaLimits, SchemaRejected, child, own_size
from hammer.server.grammar.merge import budget_for, choice, merge
from hammer.server.grammar.refs import resolve_refs
from hammer.server.grammar.regex import check_pattern
from hammer.server.grammar.simplify import finish

__all__ = ["SchemaLimits", "SchemaRejected", "checked_resolved", "checked_schema", "resolve_refs"]

_COUNTS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
_NUMBERS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def checked_schema(schema: Any, limits: SchemaLimits = SchemaLimits()) -> dict[str, Any]:
    """A self-contained, checked copy of ``schema``; ``SchemaRejected`` says why not.

    >>> checked_schema({"$defs": {"c": {"enum": ["a\\"b", 1]}}, "type": "string", "allOf": [{"$ref": "#/$defs/c"}]})
    {'const': 'a"b'}
    >>> checked_schema({"type": "object", "properties": {"a": False}, "required": ["a"]})
    Traceback (most recent call last):
    ...
    hammer.server.grammar.limits.SchemaRejected: no value can match the schema
    >>> checked_schema(True)
    {}
    """
    return checked_resolved(resolve_refs(schema, limits), limits)


def checked_resolved(resolved: Any, limits: SchemaLimits = SchemaLimits()) -> dict[str, Any]:
    """``checked_schema`` of a schema whose ``$ref``s ``resolve_refs`` has already inlined (a caller
    that needs the resolved schema too resolves once).

    >>> checked_resolved({"type": "object", "properties": {"a": {"type": "integer", "title": "A"}}})
    {'type': 'object', 'properties': {'a': {'type': 'integer'}}}
    """
    normalizer = _Normalizer(limits)
    checked = normalizer.walk(resolved, "", 0)
    if checked is False:
        raise SchemaRejected("no value can match the schema", "")
    _check_written_size(checked, budget_for(limits), normalizer.budget.grown)
    return checked


def _check_written_size(checked: Any, budget: Budget, grown: str | None) -> None:
    """Pay for every node of ``checked`` as it will be written out, a subschema that merges share
    counted at each place it appears, stopping as soon as the budget is spent."""
    stack = [checked]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        budget.spend(1, own_size(node, _CHILDREN), grown, "")
        for key, value in node.items():
            if key in SUBSCHEMA:
                stack.append(value)
            elif key in SUBSCHEMA_MAP and isinstance(value, dict):
                stack.extend(value.values())
            elif key in SUBSCHEMA_LIST and isinstance(value, list):
                stack.extend(value)


_CHILDREN = SUBSCHEMA | SUBSCHEMA_MAP | SUBSCHEMA_LIST


class _Normalizer:
    def __init__(self, limits: SchemaLimits) -> None:
        self.limits = limits
        self.budget = budget_for(limits)  # paid by every merge of this schema's preparation, together

    def walk(self, node: Any, pointer: str, depth: int) -> Any:
        if depth > self.limits.max_depth:
            raise SchemaRejected(f"subschemas nest more than {self.limits.max_depth} deep", pointer)
        if node is True:
            return {}
        if node is False:
            return False
        plain: dict[str, Any] = {}
        for key, value in node.items():
            if key in REJECTED:
                raise SchemaRejected(REJECTED[key], child(pointer, key))
            if key in ENFORCED and key not in ANNOTATIONS:
                plain[key] = self.keyword(key, value, child(pointer, key), depth)
        choices = {kind: plain.pop(kind) for kind in ("anyOf", "oneOf") if kind in plain}
        parts = plain.pop("allOf", [])
        result = finish(plain, self.limits, pointer)
        for kind, branches in choices.items():
            self.count_alternatives(branches, child(pointer, kind))
            result = merge(result, choice(kind, branches), self.limits, pointer, self.budget)
        for part in parts:
            result = merge(result, part, self.limits, pointer, self.budget)
        return result

    def count_alternatives(self, branches: list[Any], pointer: str) -> None:
        """An ``anyOf`` of consts is an enum by another name: its values (an enum branch's each, nested
        anyOfs' too) count against the enum limit, as does any branch."""
        count, stack = 0, list(branches)
        while stack:
            branch = stack.pop()
            nested = next((branch[k] for k in ("anyOf", "oneOf") if isinstance(branch, dict) and k in branch), None)
            if nested is not None:
                stack.extend(nested)
            else:
                count += len(branch["enum"]) if isinstance(branch, dict) and "enum" in branch else 1
        if count > self.limits.max_enum:
            raise SchemaRejected(f"{count} alternatives (each enum value counted), more than the limit of "
                                 f"{self.limits.max_enum} values", pointer)

    def keyword(self, key: str, value: Any, pointer: str, depth: int) -> Any:
        if key in ("items", "additionalProperties"):
            return self.walk(value, pointer, depth + 1)
        if key == "properties":
            return {name: self.walk(sub, child(pointer, name), depth + 1) for name, sub in value.items()}
        if key in ("prefixItems", "anyOf", "oneOf", "allOf"):
            if not value:
                raise SchemaRejected(f"'{key}' must not be empty", pointer)
            if key in ("anyOf", "oneOf") and len(value) > self.limits.max_enum:  # before any branch is walked
                raise SchemaRejected(f"{len(value)} alternatives, more than the limit of {self.limits.max_enum} "
                                     "values", pointer)
            return [self.walk(sub, child(pointer, i), depth + 1) for i, sub in enumerate(value)]
        if key == "type":
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list) or not all(isinstance(n, str) and n in TYPES for n in names):
                raise SchemaRejected(f"'type' must be one of {', '.join(TYPES)} or a list of them", pointer)
            return list(dict.fromkeys(names)) if isinstance(value, list) else value
        if key == "required":
            if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
                raise SchemaRejected("'required' must be a list of strings", pointer)
            return list(dict.fromkeys(value))
        if key == "enum" and not isinstance(value, list):
            raise SchemaRejected("'enum' must be an array", pointer)
        if key in _COUNTS:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or int(value) != value:
                raise SchemaRejected(f"'{key}' must be a non-negative integer", pointer)
            return int(value)
        if key in _NUMBERS and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise SchemaRejected(f"'{key}' must be a number", pointer)
        if key == "pattern":
            check_pattern(value, self.limits, pointer)
        if key == "format" and not isinstance(value, str):
            raise SchemaRejected("'format' must be a string", pointer)
        if key == "uniqueItems" and not isinstance(value, bool):
            raise SchemaRejected("'uniqueItems' must be a boolean", pointer)
        return value
