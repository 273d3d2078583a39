"""The error every rejection raises, and the limits that keep a grammar cheap for llama.cpp.

Kept apart from ``schema.py`` so the regex parser and the grammar writer can raise the same
error without importing the schema walker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class SchemaRejected(ValueError):
    """A client schema (or one of its patterns) that no grammar will be built for.

    ``pointer`` says where, JSON-pointer style, so the caller can name the field:

    >>> e = SchemaRejected("backreferences are not supported", "/properties/city/pattern")
    >>> str(e), e.pointer
    ('/properties/city/pattern: backreferences are not supported', '/properties/city/pattern')
    """

    def __init__(self, message: str, pointer: str = "") -> None:
        super().__init__(f"{pointer}: {message}" if pointer else message)
        self.message = message
        self.pointer = pointer


@dataclass(frozen=True)
class SchemaLimits:
    """Bounds on what a schema may ask of the grammar engine.

    The defaults keep every grammar under a few hundred KiB, its compile time in
    milliseconds, and each value finite:

    - ``max_depth`` (16): nesting of subschemas. The raw JSON of the schema may nest at most
      ``4 * max_depth + 8`` containers (checked without recursion, before anything else).
    - ``max_string_length`` (1024): the length generated for a string without ``maxLength``,
      and the cap for ``maxLength`` (a decoding cap: larger values are lowered to it). A
      ``minLength`` above it is rejected, since then no generated string could validate.
    - ``max_items`` (64): the same for arrays: ``maxItems`` above it (or absent) is lowered
      to it, ``minItems`` above it is rejected. Also caps the keys of free-form objects.
    - ``max_repetition`` (256): the largest ``{m,n}`` count in a ``pattern``.
    - ``max_repetition_product`` (4096): nested pattern quantifiers multiply; their product
      (unbounded ones counted as ``max_repetition``) must stay below this.
    - ``max_variable_repeats`` (8): quantifiers with a variable count (``*``, ``+``, ``?``,
      ``{m,n}``) in one ``pattern``. Each lets llama.cpp's grammar engine follow one more way
      of splitting the string. ``benchmarks/grammar_ambiguity.py`` on the embedded model, 7
      tokens: 0.1 s with 8 adjacent ``[a-z]*``, 0.7 s with 16, 2.4 s with 20, 7.7 s with 24
      (and a loaded machine took over 60 s with 30), with the generation slot held.
    - ``max_enum`` (1024): values of one ``enum``.
    - ``max_properties`` (256): properties of one object.
    - ``max_schema_nodes`` (20000): subschemas after ``$ref`` inlining, and again after ``allOf``
      merging and ``anyOf`` distribution (each can grow a schema exponentially); see ``Budget``.
    - ``max_schema_bytes`` (4 MiB): the JSON text of those subschemas' own values (enums,
      consts, names, descriptions) after ``$ref`` inlining; the schema checked for decoding
      (annotations dropped) gets four times ``max_grammar_bytes``, as its values are grammar text.
    - ``max_grammar_bytes`` (256 KiB): the grammar text, and also the copies llama.cpp makes
      when it expands ``{m,n}`` repetitions (counted as repetitions, at 4 bytes each).
    """

    max_depth: int = 16
    max_string_length: int = 1024
    max_items: int = 64
    max_repetition: int = 256
    max_repetition_product: int = 4096
    max_variable_repeats: int = 8
    max_enum: int = 1024
    max_properties: int = 256
    max_schema_nodes: int = 20000
    max_schema_bytes: int = 4 * 1024 * 1024
    max_grammar_bytes: int = 256 * 1024


def child(pointer: str, *parts: str | int) -> str:
    """Extend a JSON pointer, escaping ``~`` and ``/`` as RFC 6901 says.

    >>> child("/properties", "a/b", 0)
    '/properties/a~1b/0'
    """
    for part in parts:
        pointer += "/" + str(part).replace("~", "~0").replace("/", "~1")
    return pointer


class Budget:
    """What one schema's preparation may build, spent as it builds: each node an expansion makes
    (a ``$ref`` copy, an ``allOf`` merge, an ``anyOf`` branch distributed over ``allOf``) is paid for
    at once, so the work stops within the budget rather than after an expansion finished; the
    error names what grew.

    >>> budget = Budget(nodes=2, size=100)
    >>> budget.made({"enum": [1, 2]}, "its allOf parts are merged", "/allOf")
    >>> budget.made({"type": "string"}, "its allOf parts are merged", "/allOf")
    >>> budget.made({}, "its allOf parts are merged", "/allOf")
    Traceback (most recent call last):
    ...
    hammer.server.grammar.limits.SchemaRejected: /allOf: the schema is too large once its allOf parts are merged: \
more than 2 subschemas
    """

    def __init__(self, nodes: int, size: int, alternatives: int = 1 << 62) -> None:
        self.max_nodes, self.max_size, self.max_alternatives = nodes, size, alternatives
        self.nodes, self.size, self.alternatives = nodes, size, alternatives
        #: The last expansion paid for: what a later check of the whole result names.
        self.grown: str | None = None

    def spend(self, nodes: int, size: int, grew: str | None, pointer: str) -> None:
        self.nodes -= nodes
        self.size -= size
        if self.nodes >= 0 and self.size >= 0:
            return
        once = f" once {grew}" if grew else ""
        what = (f"more than {self.max_nodes} subschemas" if self.nodes < 0
                else f"more than {self.max_size} bytes of values")
        raise SchemaRejected(f"the schema is too large{once}: {what}", pointer)

    def distribute(self, alternatives: int, grew: str, pointer: str) -> None:
        """Pay, before the work, for the alternatives a distribution of ``anyOf`` over ``allOf`` makes:
        each is a merge, and nested distributions multiply (all of one schema's count together)."""
        self.alternatives -= alternatives
        if self.alternatives < 0:
            raise SchemaRejected(f"the schema is too large once {grew}: more than {self.max_alternatives} "
                                 "alternatives", pointer)

    def made(self, node: Any, grew: str | None, pointer: str, children: frozenset[str] = frozenset()) -> None:
        """Pay for one new node: itself, and the JSON of its values other than the subschemas
        under the keys ``children`` (paid for when they were made)."""
        self.grown = grew or self.grown
        self.spend(1, own_size(node, children), grew, pointer)


def own_size(node: Any, children: frozenset[str]) -> int:
    """JSON bytes of a node's keys and of its values outside ``children``.

    >>> own_size({"enum": ["ab"], "properties": {"x": {}}}, frozenset({"properties"}))
    21
    """
    if not isinstance(node, dict):
        return 1
    return sum(len(key) + (len(json.dumps(value)) if key not in children
                           else sum(map(len, value)) if isinstance(value, dict) else 0)
               for key, value in node.items())
