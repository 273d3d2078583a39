"""The error every rejection raises, and the limits that keep a grammar cheap for llama.cpp.

Kept apart from ``schema.py`` so the regex parser and the grammar writer can raise the same
error without importing the schema walker.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    - ``max_schema_nodes`` (20000): subschemas after ``$ref`` inlining (inlining can grow a
      schema exponentially).
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
    max_grammar_bytes: int = 256 * 1024


def child(pointer: str, *parts: str | int) -> str:
    """Extend a JSON pointer, escaping ``~`` and ``/`` as RFC 6901 says.

    >>> child("/properties", "a/b", 0)
    '/properties/a~1b/0'
    """
    for part in parts:
        pointer += "/" + str(part).replace("~", "~0").replace("/", "~1")
    return pointer
