"""Inline local ``$ref``s so a schema is self-contained, refusing recursive and remote ones.

A grammar cannot express a recursive schema with a bounded size, and remote refs would mean
network I/O, so both are rejected by name. ``$defs``/``definitions`` are dropped afterwards.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import unquote

from hammer.server.grammar.keywords import ANNOTATIONS, SUBSCHEMA, SUBSCHEMA_LIST, SUBSCHEMA_MAP
from hammer.server.grammar.limits import Budget, SchemaLimits, SchemaRejected, child
from hammer.server.grammar.shape import check_shape


def resolve_refs(schema: Any, limits: SchemaLimits = SchemaLimits()) -> Any:
    """A copy of ``schema`` with every local ``$ref`` replaced by what it points to.

    Refs resolve against ``schema`` itself (a tool's ``parameters``), so call this per tool
    before nesting tools into a larger schema.

    >>> resolve_refs({"$defs": {"c": {"type": "string"}}, "properties": {"a": {"$ref": "#/$defs/c"}}})
    {'properties': {'a': {'type': 'string'}}}
    >>> resolve_refs({"$defs": {"n": {"items": {"$ref": "#/$defs/n"}}}, "$ref": "#/$defs/n"})
    Traceback (most recent call last):
    ...
    hammer.server.grammar.limits.SchemaRejected: /$defs/n/items/$ref: recursive $ref '#/$defs/n' is not supported
    """
    check_shape(schema, limits)
    return _Resolver(schema, limits).walk(schema, "", ())


class _Resolver:
    def __init__(self, root: Any, limits: SchemaLimits) -> None:
        self.root = root
        self.budget = Budget(limits.max_schema_nodes, limits.max_schema_bytes)
        # Acyclic targets resolve the same wherever they are used: fragment → (copy, nodes, bytes).
        self.memo: dict[str, tuple[Any, int, int]] = {}
        self.followed = False  # a $ref was met: from then on, growth is the expansion's

    def grew(self) -> str | None:
        """What made the schema grow, for the error (no talk of $refs when it has none)."""
        return "its $refs are expanded" if self.followed else None

    def walk(self, node: Any, pointer: str, active: tuple[str, ...]) -> Any:
        if isinstance(node, bool):
            return node
        if not isinstance(node, dict):
            raise SchemaRejected("a schema must be an object or a boolean", pointer)
        out: dict[str, Any] = {}
        for key, value in node.items():
            where = child(pointer, key)
            if key in ("$defs", "definitions", "$ref"):
                continue
            if key in SUBSCHEMA:
                if key == "items" and isinstance(value, list):
                    raise SchemaRejected("'items' as an array (draft 7) is not supported; use 'prefixItems'", where)
                out[key] = self.walk(value, where, active)
            elif key in SUBSCHEMA_MAP:
                if not isinstance(value, dict):
                    raise SchemaRejected(f"'{key}' must be an object", where)
                out[key] = {name: self.walk(sub, child(where, name), active) for name, sub in value.items()}
            elif key in SUBSCHEMA_LIST:
                if not isinstance(value, list):
                    raise SchemaRejected(f"'{key}' must be an array", where)
                out[key] = [self.walk(sub, child(where, i), active) for i, sub in enumerate(value)]
            else:
                out[key] = copy.deepcopy(value)
        self.budget.made(out, self.grew(), pointer, _CHILDREN)
        if "$ref" not in node:
            return out
        target = self.follow(node["$ref"], child(pointer, "$ref"), active)
        if any(key not in ANNOTATIONS for key in out):
            return {"allOf": [target, out]}  # 2020-12: a $ref with siblings is a conjunction
        return target

    def follow(self, ref: Any, pointer: str, active: tuple[str, ...]) -> Any:
        self.followed = True
        if not isinstance(ref, str):
            raise SchemaRejected("'$ref' must be a string", pointer)
        if not ref.startswith("#"):
            raise SchemaRejected(f"remote $ref {ref!r} is not supported (only '#...' refs within the schema)", pointer)
        fragment = unquote(ref[1:])
        if fragment and not fragment.startswith("/"):
            raise SchemaRejected(f"$ref {ref!r}: only JSON-pointer refs ('#/...') are supported", pointer)
        if fragment in active:
            raise SchemaRejected(f"recursive $ref {ref!r} is not supported", pointer)
        if fragment in self.memo:
            resolved, nodes, size = self.memo[fragment]
            self.budget.spend(nodes, size, self.grew(), pointer)
            return copy.deepcopy(resolved)
        target = _lookup(self.root, fragment, ref, pointer)
        before = (self.budget.nodes, self.budget.size)
        resolved = self.walk(target, fragment, active + (fragment,))
        self.memo[fragment] = (resolved, before[0] - self.budget.nodes, before[1] - self.budget.size)
        return copy.deepcopy(resolved)


_CHILDREN = SUBSCHEMA | SUBSCHEMA_MAP | SUBSCHEMA_LIST


def _lookup(root: Any, fragment: str, ref: str, pointer: str) -> Any:
    node = root
    for raw in fragment.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise SchemaRejected(f"$ref {ref!r} points to nothing in the schema", pointer)
    return node
