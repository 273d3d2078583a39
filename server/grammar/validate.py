"""A JSON Schema validator whose ``pattern`` never runs on a backtracking engine.

jsonschema checks ``pattern`` with Python's ``re``, which backtracks: a client's ``^(a+)+$``
against a value of 25 characters held the GIL for seconds. Everything that validates a client
value against a client schema (enum filtering, tool-call arguments) uses this instead.

>>> safe_validator({"type": "string", "pattern": "^(a+)+$"}).is_valid("a" * 40 + "!")
False
>>> [e.message for e in safe_validator({"pattern": "^a$"}).iter_errors("b")]
["'b' does not match '^a$'"]
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import jsonschema
from hammer.server.grammar.limits import SchemaRejected
from hammer.server.grammar.match import pattern_matcher


def safe_validator(schema: Any) -> Any:
    """A Draft 2020-12 validator of ``schema`` matching its patterns in linear time (each parsed once)."""
    matchers: dict[str, Callable[[str], bool] | None] = {}

    def matcher(pattern: str) -> Callable[[str], bool] | None:
        if pattern not in matchers:
            try:
                matchers[pattern] = pattern_matcher(pattern)
            except SchemaRejected:
                matchers[pattern] = None
        return matchers[pattern]

    def pattern_keyword(validator: Any, pattern: Any, instance: Any, _: Any) -> Iterator[jsonschema.ValidationError]:
        if not validator.is_type(instance, "string"):
            return
        matches = matcher(pattern) if isinstance(pattern, str) else None
        if matches is None:  # outside the subset (never in a checked schema): fail closed
            yield jsonschema.ValidationError(f"pattern {str(pattern)[:80]!r} is not supported")
        elif not matches(instance):
            shown = instance if len(instance) <= 80 else instance[:80] + "..."
            yield jsonschema.ValidationError(f"{shown!r} does not match {pattern!r}")

    cls = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": pattern_keyword})
    return cls(schema)
