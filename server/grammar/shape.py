"""A first, iterative look at untrusted schema JSON, before any recursive walk touches it.

Everything after this check recurses, so it must know the nesting is bounded and the values
are plain JSON (no NaN, no lone surrogates, which no UTF-8 output could carry).
"""

from __future__ import annotations

import math
from typing import Any

from hammer.server.grammar.limits import SchemaLimits, SchemaRejected, child


def check_shape(schema: Any, limits: SchemaLimits) -> None:
    """Reject non-JSON values, lone surrogates, non-finite numbers and over-deep nesting.

    >>> check_shape({"enum": ["\\x00", "a\\"b"]}, SchemaLimits())
    >>> deep = {}
    >>> for _ in range(500): deep = {"items": deep}
    >>> try: check_shape(deep, SchemaLimits())
    ... except SchemaRejected as e: print(e.message)
    the schema nests more than 72 levels deep
    """
    max_containers = 4 * limits.max_depth + 8
    # Nodes visited, bounded too, so a schema of a million tiny objects is refused early.
    budget = 50 * limits.max_schema_nodes
    stack: list[tuple[Any, str, int]] = [(schema, "", 0)]
    while stack:
        value, pointer, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise SchemaRejected("the schema is too large", "")
        if isinstance(value, dict):
            if depth >= max_containers:
                raise SchemaRejected(f"the schema nests more than {max_containers} levels deep", pointer)
            for key, item in value.items():
                if not isinstance(key, str):
                    raise SchemaRejected(f"object key {key!r} is not a string", pointer)
                _check_text(key, pointer)
                stack.append((item, child(pointer, key), depth + 1))
        elif isinstance(value, (list, tuple)):
            if depth >= max_containers:
                raise SchemaRejected(f"the schema nests more than {max_containers} levels deep", pointer)
            stack.extend((item, child(pointer, i), depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, pointer)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise SchemaRejected(f"{value!r} is not a JSON number", pointer)
        elif value is not None and not isinstance(value, (bool, int)):
            raise SchemaRejected(f"{type(value).__name__} is not a JSON value", pointer)


def _check_text(text: str, pointer: str) -> None:
    # Lone surrogates cannot be encoded as UTF-8: no model output, no llama.cpp grammar.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SchemaRejected("a string contains a lone surrogate (invalid Unicode)", pointer) from None
