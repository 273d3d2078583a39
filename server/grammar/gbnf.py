"""Prepared JSON Schema → GBNF for llama.cpp: one JSON value, optionally between fixed texts.

Every value rule ends with bounded whitespace (``space``, as llama.cpp's own converter does).
Literals are escaped by ``hammer.server.grammar.text`` (pure ASCII, never a NUL); enum and const
values are their exact ``json.dumps(..., ensure_ascii=False)`` text; strings never hold raw
control characters and, without ``maxLength``, at most ``max_string_length`` characters;
arrays at most ``max_items`` elements; objects with declared properties get exactly those
(required in order, optional ones optionally, in order) and no other keys. Identical rules
are written once. A grammar over ``max_grammar_bytes`` (text, or the copies llama.cpp makes
for ``{m,n}`` repetitions) is a ``SchemaRejected``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hammer.server.grammar.charset import ALL, SURROGATES, CharSet
from hammer.server.grammar.formats import format_gbnf
from hammer.server.grammar.integers import INTEGER, NUMBER, integer_range
from hammer.server.grammar.limits import SchemaLimits, SchemaRejected
from hammer.server.grammar.regex import pattern_gbnf
from hammer.server.grammar.schema import checked_schema
from hammer.server.grammar.simplify import FAMILIES, declared_types, int_bounds
from hammer.server.grammar.text import char_class, literal

SPACE = '| " " | "\\n" [ \\t]{0,20}'
# One character of a JSON string as written: raw (no control, quote, backslash, DEL) or an
# escape; \u escapes never name a surrogate, so the decoded text is always valid Unicode.
_RAW = ALL.minus(CharSet.of((0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C), (0x7F, 0x7F), SURROGATES))
CHAR = (char_class(_RAW.ranges) + ' | "\\\\" (["\\\\/bfnrt] | "u" ([0-9a-cA-CefEF] [0-9a-fA-F]{3} '
        '| [dD] [0-7] [0-9a-fA-F]{2}))')
# Integer bounds beyond this many digits cannot bind (generated integers have <= 16 digits).
_HUGE = 10 ** 18


def schema_gbnf(schema: Any, limits: SchemaLimits = SchemaLimits()) -> str:
    """GBNF whose ``root`` is one JSON value matching ``schema`` (checked here, so any input is safe).

    >>> print(schema_gbnf({"enum": ["a\\"b", "\\u0000"]}))
    root ::= value
    space ::= | " " | "\\n" [ \\t]{0,20}
    value ::= ("\\"a\\\\\\"b\\"" | "\\"\\\\u0000\\"") space
    <BLANKLINE>
    """
    return sequence_gbnf("", schema, "", limits)


def sequence_gbnf(prefix: str, schema: Any, suffix: str, limits: SchemaLimits = SchemaLimits()) -> str:
    """GBNF whose ``root`` is ``prefix``, one JSON value matching ``schema``, then ``suffix``.

    >>> print(sequence_gbnf("```\\n", {"type": "boolean"}, "\\n```").splitlines()[0])
    root ::= "```\\n" boolean "\\n```"
    """
    writer = _Writer(limits)
    value = writer.value(checked_schema(schema, limits), "value")
    root = " ".join(part for part in (literal(prefix) if prefix else "", value,
                                      literal(suffix) if suffix else "") if part)
    return writer.finish(root)


class _Writer:
    def __init__(self, limits: SchemaLimits) -> None:
        self.limits = limits
        self.rules: dict[str, str] = {}  # name → body, in the order written
        self.names: dict[str, str] = {}  # body → name, so identical rules are shared
        # base name → the next suffix to try: each try moves it on, so naming stays linear when
        # thousands of hints cut to 40 characters share one base
        self.suffixes: dict[str, int] = {}

    # --- bookkeeping -------------------------------------------------------------------------

    def rule(self, hint: str, body: str) -> str:
        if body in self.names:
            return self.names[body]
        base = re.sub(r"[^a-zA-Z0-9]+", "-", hint).strip("-").lower()[:40].strip("-") or "r"
        if base[0].isdigit():
            base = "r" + base
        name = base
        while name in self.rules or name == "root":
            self.suffixes[base] = n = self.suffixes.get(base, 1) + 1
            name = f"{base}-{n}"
        self.rules[name] = body
        self.names[body] = name
        return name

    def fixed(self, name: str, body: str) -> str:
        """A primitive rule under its own name (``space``, ``char``, ``boolean``...)."""
        self.rules.setdefault(name, body)
        return name

    def finish(self, root: str) -> str:
        lines = [f"root ::= {root}"] + [f"{name} ::= {body}" for name, body in self.rules.items()]
        text = "\n".join(lines) + "\n"
        size = len(text.encode("utf-8"))
        outside_literals = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
        copies = sum(max(int(m.group(1)), int(m.group(2) or 0))
                     for m in re.finditer(r"\{(\d+)(?:,(\d*))?\}", outside_literals))
        if size > self.limits.max_grammar_bytes or 4 * copies > self.limits.max_grammar_bytes:
            raise SchemaRejected(f"the schema needs a grammar larger than {self.limits.max_grammar_bytes} bytes; "
                                 f"simplify it (fewer enum values, properties or alternatives)", "")
        return text

    # --- values ------------------------------------------------------------------------------

    def value(self, node: Any, hint: str) -> str:
        """Name of a rule for one JSON value matching the checked ``node`` (then ``space``)."""
        if node == {} or node is True:
            return self.any_value()
        for kind in ("anyOf", "oneOf"):
            if kind in node:  # oneOf as anyOf: see the module docstring of hammer.server.grammar.schema
                names = [self.value(b, f"{hint}-{i}") for i, b in enumerate(node[kind]) if b is not False]
                return self.rule(hint, " | ".join(dict.fromkeys(names)))
        if "const" in node or "enum" in node:
            values = [node["const"]] if "const" in node else node["enum"]
            texts = dict.fromkeys(literal(json.dumps(v, ensure_ascii=False)) for v in values)
            alternatives = " | ".join(texts)
            body = f"({alternatives}) {self.space()}" if len(texts) > 1 else f"{alternatives} {self.space()}"
            return self.rule(hint, body)
        types = declared_types(node) or self.inferred_types(node)
        if "number" in types:
            types.discard("integer")
        writers = {"string": self.string, "number": self.number, "integer": self.integer, "object": self.object,
                   "array": self.array, "boolean": self.boolean, "null": self.null}
        names = [writers[t](node, hint) for t in sorted(types)]
        return names[0] if len(names) == 1 else self.rule(hint, " | ".join(names))

    @staticmethod
    def inferred_types(node: dict[str, Any]) -> set[str]:
        """Types a node without ``type`` is meant for, judged by its keywords (all if none).

        Narrowing an untyped ``{"properties": ...}`` to objects only is an under-approximation:
        what it generates is still valid.
        """
        families = {family for family, keys in FAMILIES.items() if keys & node.keys()}
        return families or {"null", "boolean", "object", "array", "string", "number"}

    def space(self) -> str:
        return self.fixed("space", SPACE)

    def any_value(self) -> str:
        cap = self.limits.max_items
        value = "value"
        string = self.plain_string(0, self.limits.max_string_length)
        member = f'{string} ":" {self.space()} {value}'
        self.fixed("object", f'"{{" {self.space()} ({member} ("," {self.space()} {member}){{0,{cap - 1}}})? '
                             f'"}}" {self.space()}')
        self.fixed("array", f'"[" {self.space()} ({value} ("," {self.space()} {value}){{0,{cap - 1}}})? '
                            f'"]" {self.space()}')
        number = self.number({}, "number")
        return self.fixed(value, f"object | array | {string} | {number} | {self.boolean({}, '')} | "
                                 f"{self.null({}, '')}")

    def boolean(self, node: dict[str, Any], hint: str) -> str:
        return self.fixed("boolean", f'("true" | "false") {self.space()}')

    def null(self, node: dict[str, Any], hint: str) -> str:
        return self.fixed("null", f'"null" {self.space()}')

    def number(self, node: dict[str, Any], hint: str) -> str:
        # Bounds on non-integers cannot be written as a grammar: left to post-validation.
        return self.fixed("number", f"{NUMBER} {self.space()}")

    def integer(self, node: dict[str, Any], hint: str) -> str:
        low, high = int_bounds(node)
        if low is not None and low <= -_HUGE:
            low = None
        if high is not None and high >= _HUGE:
            high = None
        if (low is not None and low >= _HUGE) or (high is not None and high <= -_HUGE):
            raise SchemaRejected("integer bounds this large are not supported", "")
        if low is None and high is None:
            return self.fixed("integer", f"{INTEGER} {self.space()}")
        return self.rule(f"{hint}-int", f"{integer_range(low, high)} {self.space()}")

    # --- strings -----------------------------------------------------------------------------

    def string(self, node: dict[str, Any], hint: str) -> str:
        low = node.get("minLength", 0)
        high = node.get("maxLength")
        if "pattern" in node:
            inside = pattern_gbnf(node["pattern"], self.limits, low, high).body
        elif "format" in node and format_gbnf(node["format"], low, high) is not None:
            inside = format_gbnf(node["format"], low, high)
        else:
            return self.plain_string(low, self.limits.max_string_length if high is None else high)
        return self.rule(f"{hint}-string", f'"\\"" {inside} "\\"" {self.space()}')

    def plain_string(self, low: int, high: int) -> str:
        char = self.fixed("char", CHAR)
        count = _repeat(char, low, high)
        inside = f" {count}" if count else ""
        return self.rule(f"string-{low}-{high}" if (low, high) != (0, self.limits.max_string_length) else "string",
                         f'"\\""{inside} "\\"" {self.space()}')

    # --- objects -----------------------------------------------------------------------------

    def object(self, node: dict[str, Any], hint: str) -> str:
        space = self.space()
        declared = {name: sub for name, sub in node.get("properties", {}).items() if sub is not False}
        extra = node.get("additionalProperties", {})
        required = node.get("required", [])
        for name in required:  # required but undeclared: its value follows additionalProperties
            declared.setdefault(name, extra)
        if not declared and "properties" not in node and extra is not False:
            return self.free_object(node, extra, hint)
        members = []
        for name, sub in declared.items():
            value = self.value(sub, f"{hint}-{name}")
            members.append((f"{literal(json.dumps(name, ensure_ascii=False))} {space} \":\" {space} {value}",
                            name in required))
        if not members:
            return self.rule(f"{hint}-obj", f'"{{" {space} "}}" {space}')
        first_required = next((i for i, (_, req) in enumerate(members) if req), len(members))
        rests = self.rests(members, hint)
        starts = [f"{members[i][0]} {rests[i + 1]}".strip() for i in range(min(first_required + 1, len(members)))]
        start = " | ".join(starts)
        if first_required == len(members):
            start = f"({start})?"
        elif len(starts) > 1:
            start = f"({start})"
        return self.rule(f"{hint}-obj", f'"{{" {space} {start} "}}" {space}')

    def rests(self, members: list[tuple[str, bool]], hint: str) -> list[str]:
        """For each position, a rule (or "") producing the members after it, each after a comma."""
        space = self.space()
        rests = [""] * (len(members) + 1)
        for i in range(len(members) - 1, 0, -1):
            text, req = members[i]
            part = f'"," {space} {text}'
            body = f"{part if req else f'({part})?'} {rests[i + 1]}".strip()
            rests[i] = self.rule(f"{hint}-rest", body)
        return rests

    def free_object(self, node: dict[str, Any], extra: Any, hint: str) -> str:
        """Any keys (plain strings), values matching ``additionalProperties``, at most a capped count."""
        space = self.space()
        cap = min(node.get("maxProperties", self.limits.max_items), self.limits.max_items)
        if cap == 0:
            return self.rule(f"{hint}-obj", f'"{{" {space} "}}" {space}')
        key = self.plain_string(0, self.limits.max_string_length)
        member = f'{key} ":" {space} {self.value(extra, f"{hint}-value")}'
        more = _repeat(f'("," {space} {member})', 0, cap - 1)
        return self.rule(f"{hint}-obj", f'"{{" {space} ({member}{" " + more if more else ""})? "}}" {space}')

    # --- arrays ------------------------------------------------------------------------------

    def array(self, node: dict[str, Any], hint: str) -> str:
        space = self.space()
        prefix = node.get("prefixItems", [])
        items = node.get("items", {})
        low = node.get("minItems", 0)
        high = min(node.get("maxItems", self.limits.max_items), self.limits.max_items)
        cut = next((i for i, sub in enumerate(prefix) if sub is False), None)
        if cut is not None:
            prefix, high = prefix[:cut], min(high, cut)
        if items is False:
            high = min(high, len(prefix))
        if low > high:
            raise SchemaRejected("no array can satisfy minItems here", "")
        if high == 0:
            return self.rule(f"{hint}-arr", f'"[" {space} "]" {space}')
        elements = [self.value(sub, f"{hint}-{i}") for i, sub in enumerate(prefix[:high])]
        tail = self.value(items, f"{hint}-item") if high > len(prefix) else ""

        def after(i: int) -> str:
            if i >= high:
                return ""
            if i >= len(elements):
                return _repeat(f'("," {space} {tail})', max(0, low - i), high - i)
            part = f'"," {space} {elements[i]} {after(i + 1)}'.strip()
            return part if i < low else f"({part})?"

        first = elements[0] if elements else tail
        body = f"{first} {after(1)}".strip()
        if low == 0:
            body = f"({body})?"
        return self.rule(f"{hint}-arr", f'"[" {space} {body} "]" {space}')


def _repeat(unit: str, low: int, high: int) -> str:
    """``unit`` between low and high times in GBNF's counted syntax ("" when never).

    >>> _repeat("x", 0, 1), _repeat("x", 2, 2), _repeat("x", 0, 5), _repeat("x", 0, 0)
    ('x?', 'x{2}', 'x{0,5}', '')
    """
    if high == 0:
        return ""
    if low == high:
        return unit if low == 1 else f"{unit}{{{low}}}"
    if (low, high) == (0, 1):
        return f"{unit}?"
    return f"{unit}{{{low},{high}}}"
