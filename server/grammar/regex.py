"""JSON Schema ``pattern`` → a small regex AST (a safe subset) → GBNF for the JSON-encoded string.

Supported: literals, escaped punctuation, ``\\d \\D \\w \\W \\s \\S``, ``\\t \\n \\r \\f \\v
\\uXXXX \\xHH``, ``.``, classes (ranges, negation, escapes), groups ``( )`` and ``(?: )``,
``|``, quantifiers ``? * + {n} {n,} {n,m}`` (a lazy ``?`` suffix means the same here), ``^``
at the start and ``$`` at the end of a top-level alternative. Anything else (backreferences,
``\\b``, lookaround, named groups, ``\\p{..}``, anchors elsewhere) is a ``SchemaRejected``
naming the construct and its position.

Semantics: the server validates with Python's ``re`` (via jsonschema), clients may use
ECMA-262, so every character set is the INTERSECTION of both readings (``\\d`` is ``[0-9]``,
``\\w`` ASCII, ``.`` excludes ``\\n \\r \\u2028 \\u2029``, negated Unicode-sensitive classes
are complemented against the widest reading). That, and leaving out most control
characters, is an under-approximation: every string the grammar admits matches the pattern.

Patterns are unanchored (search): a side without its anchor gets any run of characters.
A string's ``minLength``/``maxLength`` are enforced together with the pattern when the
pattern's own length range already fits, or when the repetitions at the top level of each
alternative can be bounded to fit; otherwise the grammar enforces the pattern and the length
is left to post-validation (see ``PatternGrammar.exact``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Union

from hammer.server.grammar import charset as cs
from hammer.server.grammar.charset import CharSet
from hammer.server.grammar.limits import SchemaLimits, SchemaRejected
from hammer.server.grammar.text import char_class, literal

MAX_PATTERN_CHARS = 4096
MAX_GROUP_DEPTH = 32
BMP = CharSet.of((0, 0xFFFF))


@dataclass(frozen=True)
class Chars:
    """One character from ``chars`` (already the safe intersection)."""

    chars: CharSet


@dataclass(frozen=True)
class Seq:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Alt:
    options: tuple[Node, ...]


@dataclass(frozen=True)
class Repeat:
    item: Node
    low: int
    high: int | None  # None: unbounded


Node = Union[Chars, Seq, Alt, Repeat]


@dataclass(frozen=True)
class Branch:
    """A top-level alternative and whether its start / end are anchored."""

    node: Node
    start: bool
    end: bool


def parse_pattern(pattern: str, limits: SchemaLimits = SchemaLimits(), pointer: str = "") -> tuple[Branch, ...]:
    """Parse ``pattern`` into top-level branches, or raise ``SchemaRejected``.

    >>> [(b.start, b.end) for b in parse_pattern("^ab|c$")]
    [(True, False), (False, True)]
    >>> parse_pattern("^(a)\\\\1$")
    Traceback (most recent call last):
    ...
    hammer.server.grammar.limits.SchemaRejected: backreference '\\1' at position 4 is not supported
    """
    if not isinstance(pattern, str):
        raise SchemaRejected("'pattern' must be a string", pointer)
    if len(pattern) > MAX_PATTERN_CHARS:
        raise SchemaRejected(f"pattern longer than {MAX_PATTERN_CHARS} characters", pointer)
    branches = _Parser(pattern, limits, pointer).top()
    try:
        re.compile(pattern)
    except re.error as exc:  # the server validates with Python's re: it must compile there too
        raise SchemaRejected(f"pattern is not a valid Python regular expression: {exc}", pointer) from None
    return branches


def check_pattern(pattern: str, limits: SchemaLimits = SchemaLimits(), pointer: str = "") -> None:
    """Raise ``SchemaRejected`` unless ``pattern`` is within the supported subset.

    >>> check_pattern("^[A-Z]{2}-\\\\d{3,}$")
    >>> check_pattern("^\\\\w\\\\b$")
    Traceback (most recent call last):
    ...
    hammer.server.grammar.limits.SchemaRejected: word boundary '\\b' at position 3 is not supported
    """
    parse_pattern(pattern, limits, pointer)


class _Parser:
    def __init__(self, pattern: str, limits: SchemaLimits, pointer: str) -> None:
        self.text = pattern
        self.pos = 0
        self.limits = limits
        self.pointer = pointer

    def fail(self, what: str, at: int | None = None) -> SchemaRejected:
        return SchemaRejected(f"{what} at position {self.pos if at is None else at} is not supported", self.pointer)

    def peek(self, ahead: int = 0) -> str:
        i = self.pos + ahead
        return self.text[i] if i < len(self.text) else ""

    def top(self) -> tuple[Branch, ...]:
        branches = []
        while True:
            start = self.peek() == "^"
            if start:
                self.pos += 1
            node, end = self.sequence(depth=0, top=True)
            branches.append(Branch(node, start, end))
            if self.peek() == "|":
                self.pos += 1
                continue
            if self.peek() == ")":
                raise SchemaRejected(f"unbalanced ')' at position {self.pos}", self.pointer)
            for branch in branches:
                _check_repeats(branch.node, self.limits, self.pointer, 1)
            variable = sum(_variable_repeats(branch.node) for branch in branches)
            if variable > self.limits.max_variable_repeats:
                raise SchemaRejected(f"pattern has {variable} variable-length quantifiers, more than the limit of "
                                     f"{self.limits.max_variable_repeats} (each multiplies the grammar engine's "
                                     "work per token)", self.pointer)
            return tuple(branches)

    def alternation(self, depth: int) -> Node:
        options = [self.sequence(depth, top=False)[0]]
        while self.peek() == "|":
            self.pos += 1
            options.append(self.sequence(depth, top=False)[0])
        if len(options) == 1:
            only = options[0]
            return only.items[0] if isinstance(only, Seq) and len(only.items) == 1 else only
        return Alt(tuple(options))

    def sequence(self, depth: int, top: bool) -> tuple[Node, bool]:
        items: list[Node] = []
        while self.pos < len(self.text) and self.peek() not in "|)":
            if self.peek() == "$":
                if top and (self.pos + 1 == len(self.text) or self.peek(1) == "|"):
                    self.pos += 1
                    return Seq(tuple(items)), True
                raise self.fail("'$' not at the end")
            if self.peek() == "^":
                raise self.fail("'^' not at the start")
            start = self.pos
            atom = self.quantified(self.atom(depth), start)
            # An unquantified group's items join this sequence (its length can then be fitted).
            items.extend(atom.items if isinstance(atom, Seq) else [atom])
        return Seq(tuple(items)), False

    def quantified(self, atom: Node, start: int) -> Node:
        quant = self.quantifier()
        if quant is None:
            return atom
        low, high = quant
        if self.peek() == "?":
            self.pos += 1  # lazy: the same language
        if self.quantifier_ahead():
            raise self.fail("a quantifier after a quantifier")
        if isinstance(atom, Chars) and any(h > 0xFFFF for _, h in atom.chars.ranges):
            raise self.fail("a quantifier on a character outside the Basic Multilingual Plane", start)
        return Repeat(atom, low, high)

    def quantifier_ahead(self) -> bool:
        return self.peek() in ("*", "+", "?") or (self.peek() == "{" and _COUNT.match(self.text, self.pos) is not None)

    def quantifier(self) -> tuple[int, int | None] | None:
        char = self.peek()
        simple = {"*": (0, None), "+": (1, None), "?": (0, 1)}
        if char in simple:
            self.pos += 1
            return simple[char]
        if char != "{":
            return None
        match = _COUNT.match(self.text, self.pos)
        if match is None:
            raise self.fail("a literal '{' (escape it as '\\{')")
        low = int(match.group(1))
        high = low if match.group(2) is None else (None if match.group(3) == "" else int(match.group(3)))
        biggest = low if high is None else high
        if biggest > self.limits.max_repetition:
            raise SchemaRejected(f"repetition count {biggest} at position {self.pos} is above the limit of "
                                 f"{self.limits.max_repetition}", self.pointer)
        if high is not None and high < low:
            raise SchemaRejected(f"repetition {{{low},{high}}} at position {self.pos} is out of order", self.pointer)
        self.pos = match.end()
        return low, high

    def atom(self, depth: int) -> Node:
        char = self.peek()
        if char == "(":
            return self.group(depth)
        # ECMA without the u flag matches UTF-16 code units: sets stay in the BMP to agree.
        if char == "[":
            return Chars(self.char_class().intersect(BMP))
        if char == ".":
            self.pos += 1
            return Chars(cs.ALL.minus(cs.LINE_TERMINATORS).intersect(BMP))
        if char == "\\":
            lower, _ = self.escape(in_class=False)
            return Chars(lower.intersect(BMP))
        if char in "*+?" or self.quantifier_ahead():
            raise self.fail(f"nothing to repeat for '{char}'")
        if char == "{":
            raise self.fail("a literal '{' (escape it as '\\{')")
        self.pos += 1
        return Chars(CharSet.chars(char))

    def group(self, depth: int) -> Node:
        start = self.pos
        if depth >= MAX_GROUP_DEPTH:
            raise self.fail(f"groups nested more than {MAX_GROUP_DEPTH} deep")
        self.pos += 1
        if self.peek() == "?":
            if self.peek(1) != ":":
                kind = {"=": "lookahead", "!": "negative lookahead", "<": "lookbehind or named group",
                        "P": "named group"}.get(self.peek(1), "group modifier")
                raise self.fail(f"{kind} '(?{self.peek(1)}'", start)
            self.pos += 2
        node = self.alternation(depth + 1)
        if self.peek() != ")":
            raise SchemaRejected(f"unbalanced '(' at position {start}", self.pointer)
        self.pos += 1
        return node

    def char_class(self) -> CharSet:
        start = self.pos
        self.pos += 1
        negated = self.peek() == "^"
        if negated:
            self.pos += 1
        lower, upper = CharSet(), CharSet()
        first = True
        while True:
            if self.pos >= len(self.text):
                raise SchemaRejected(f"unterminated character class at position {start}", self.pointer)
            if self.peek() == "]" and not first:
                self.pos += 1
                break
            if self.peek() == "]":
                raise self.fail("an empty character class", start)
            first = False
            item_lower, item_upper, single = self.class_atom()
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.pos += 1
                at = self.pos
                end_lower, _, end_single = self.class_atom()
                if single is None or end_single is None:
                    raise self.fail("a range with a class escape as an end", at)
                if end_single < single:
                    raise SchemaRejected(f"character range out of order at position {at}", self.pointer)
                item_lower = item_upper = CharSet.of((single, end_single))
            lower, upper = lower.union(item_lower), upper.union(item_upper)
        # Negation swaps the readings: the safe set is what even the widest reading excludes.
        return upper.complement() if negated else lower

    def class_atom(self) -> tuple[CharSet, CharSet, int | None]:
        """(safe set, widest set, the code point when it is a single character)."""
        if self.peek() == "\\":
            if self.peek(1) == "b":  # backspace inside a class, in ECMA and Python alike
                self.pos += 2
                return CharSet.chars("\b"), CharSet.chars("\b"), 8
            lower, upper = self.escape(in_class=True)
            single = lower.ranges[0][0] if lower == upper and lower.size() == 1 else None
            return lower, upper, single
        char = self.peek()
        if ord(char) > 0xFFFF:  # ECMA (without the u flag) sees two code units here
            raise self.fail("a character outside the Basic Multilingual Plane in a class")
        self.pos += 1
        return CharSet.chars(char), CharSet.chars(char), ord(char)

    def escape(self, in_class: bool) -> tuple[CharSet, CharSet]:
        """Parse ``\\X`` at the current position: (safe set, widest set)."""
        start = self.pos
        char = self.peek(1)
        self.pos += 2
        shorthand = {
            "d": (cs.DIGIT, cs.DIGIT.union(cs.ASCII_NON)),
            "w": (cs.WORD, cs.WORD.union(cs.ASCII_NON)),
            "s": (cs.SPACE, cs.SPACE_WIDE),
        }
        if char in shorthand:
            return shorthand[char]
        if char.lower() in shorthand:
            lower, upper = shorthand[char.lower()]
            return upper.complement(), lower.complement()
        controls = {"t": "\t", "n": "\n", "r": "\r", "f": "\f", "v": "\v"}
        if char in controls:
            return CharSet.chars(controls[char]), CharSet.chars(controls[char])
        if char in ("u", "x"):
            digits = 4 if char == "u" else 2
            hex_text = self.text[self.pos:self.pos + digits]
            if len(hex_text) != digits or not all(c in "0123456789abcdefABCDEF" for c in hex_text):
                raise self.fail(f"a malformed '\\{char}' escape", start)
            code = int(hex_text, 16)
            if 0xD800 <= code <= 0xDFFF:
                raise self.fail("a surrogate escape", start)
            self.pos += digits
            return CharSet.of((code, code)), CharSet.of((code, code))
        named = {"b": "word boundary '\\b'", "B": "word boundary '\\B'", "p": "Unicode property '\\p'",
                 "P": "Unicode property '\\P'", "k": "named backreference '\\k'", "c": "control escape '\\c'",
                 "0": "NUL escape '\\0'"}
        if char in named:
            raise self.fail(named[char], start)
        if char.isdigit():
            raise self.fail(f"backreference '\\{char}'", start)
        if char == "":
            raise self.fail("a trailing backslash", start)
        if char.isascii() and not char.isalnum():
            return CharSet.chars(char), CharSet.chars(char)
        raise self.fail(f"escape '\\{char}'", start)


_COUNT = re.compile(r"\{(\d+)(,(\d*))?\}")


def _variable_repeats(node: Node) -> int:
    """Quantifiers whose count varies (``*``, ``+``, ``?``, ``{m,n}``), nested ones included.

    >>> _variable_repeats(parse_pattern("^a*(b{2}c?)+d{1,3}$")[0].node)
    4
    """
    if isinstance(node, Seq):
        return sum(_variable_repeats(item) for item in node.items)
    if isinstance(node, Alt):
        return sum(_variable_repeats(option) for option in node.options)
    if isinstance(node, Repeat):
        return (node.low != node.high) + _variable_repeats(node.item)
    return 0


def _check_repeats(node: Node, limits: SchemaLimits, pointer: str, product: int) -> None:
    """Refuse repeats of empty-matching items and nested repeats whose counts multiply too far."""
    if isinstance(node, Seq):
        for item in node.items:
            _check_repeats(item, limits, pointer, product)
    elif isinstance(node, Alt):
        for option in node.options:
            _check_repeats(option, limits, pointer, product)
    elif isinstance(node, Repeat):
        # Unbounded repeats are GBNF '*'/'+': one recursive rule, no copies to multiply.
        high = 1 if node.high is None else node.high
        if (node.high is None or node.high > 1) and min_length(node.item) == 0:
            raise SchemaRejected("a repeated group that can match the empty string is not supported", pointer)
        product *= max(high, 1)
        if product > limits.max_repetition_product:
            raise SchemaRejected(f"nested repetitions allow {product} combinations, more than the limit of "
                                 f"{limits.max_repetition_product}", pointer)
        _check_repeats(node.item, limits, pointer, product)


def min_length(node: Node) -> int:
    """Fewest characters ``node`` matches.

    >>> min_length(parse_pattern("^a{2}(b|cd)?$")[0].node)
    2
    """
    if isinstance(node, Chars):
        return 1
    if isinstance(node, Seq):
        return sum(min_length(i) for i in node.items)
    if isinstance(node, Alt):
        return min(min_length(o) for o in node.options)
    return node.low * min_length(node.item)


def max_length(node: Node) -> float:
    """Most characters ``node`` matches (``math.inf`` when unbounded)."""
    if isinstance(node, Chars):
        return 1
    if isinstance(node, Seq):
        return sum(max_length(i) for i in node.items)
    if isinstance(node, Alt):
        return max(max_length(o) for o in node.options)
    inner = max_length(node.item)
    if node.high is None:
        return math.inf if inner > 0 else 0
    return node.high * inner


# --- rendering -------------------------------------------------------------------------------

# JSON escapes for the characters a string may not hold raw.
_JSON_ESCAPES = {0x22: '\\"', 0x5C: "\\\\", 0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}
_RAW_FORBIDDEN = CharSet.of((0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C), (0x7F, 0x7F), cs.SURROGATES)
# A set with more control characters than this came from negation or '.', not from a
# deliberate choice: its control characters are left out rather than listed one by one.
_MAX_LISTED_CONTROLS = 8
# The characters written raw when a side of a pattern is unanchored.
FREE = Chars(cs.ALL.minus(cs.LINE_TERMINATORS))


def json_chars(chars: CharSet) -> str | None:
    """GBNF for one character of ``chars`` as it appears JSON-encoded; None if none can.

    >>> json_chars(CharSet.chars('a"'))
    '([a] | "\\\\\\\\\\\\"")'
    """
    parts = []
    raw = chars.minus(_RAW_FORBIDDEN)
    if not raw.empty():
        parts.append(char_class(raw.ranges))
    controls = [code for code in range(0x20) if code in chars]
    for code in (0x22, 0x5C):
        if code in chars:
            parts.append(literal(_JSON_ESCAPES[code]))
    if len(controls) <= _MAX_LISTED_CONTROLS:
        parts.extend(literal(_JSON_ESCAPES.get(code, f"\\u{code:04x}")) for code in controls)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else "(" + " | ".join(parts) + ")"


def render(node: Node) -> str | None:
    """GBNF (a sequence expression) for the JSON encoding of what ``node`` matches; None if nothing.

    >>> render(parse_pattern("^(ab|c){2}$")[0].node)
    '("ab" | "c"){2}'
    """
    rendered = _render(node)
    return None if rendered is None else rendered[0]


def _render(node: Node) -> tuple[str, bool] | None:
    """(GBNF text, whether a quantifier may follow it directly), or None when nothing matches."""
    if isinstance(node, Chars):
        text = json_chars(node.chars)
        return None if text is None else (text, True)
    if isinstance(node, Seq):
        parts: list[tuple[str, bool]] = []
        for item in _join_literals(node.items):
            rendered = _render(item) if not isinstance(item, str) else (literal(item), True)
            if rendered is None:
                return None
            if rendered[0] != EMPTY:
                parts.append(rendered)
        if not parts:
            return EMPTY, True
        return parts[0] if len(parts) == 1 else (" ".join(text for text, _ in parts), False)
    if isinstance(node, Alt):
        options = list(dict.fromkeys(r[0] for r in map(_render, node.options) if r is not None))
        if not options:
            return None
        return (options[0], False) if len(options) == 1 else ("(" + " | ".join(options) + ")", True)
    rendered = _render(node.item)
    if rendered is None:
        return (EMPTY, True) if node.low == 0 else None
    text, atomic = rendered
    if text == EMPTY or node.high == 0:
        return EMPTY, True
    unit = text if atomic else f"({text})"
    if (node.low, node.high) == (0, 1):
        return unit + "?", False
    if node.high is None:
        return unit + ("*" if node.low == 0 else "+" if node.low == 1 else f"{{{node.low},}}"), False
    if node.low == node.high:
        return (text, atomic) if node.low == 1 else (f"{unit}{{{node.low}}}", False)
    return f"{unit}{{{node.low},{node.high}}}", False


EMPTY = '""'


def _join_literals(items: tuple[Node, ...]) -> list[Node | str]:
    """Runs of single characters become one string: their JSON text, written as one literal."""
    out: list[Node | str] = []
    for item in items:
        code = _single(item)
        if code is None:
            out.append(item)
        elif out and isinstance(out[-1], str):
            out[-1] += _json_text(code)
        else:
            out.append(_json_text(code))
    return out


def _single(node: Node) -> int | None:
    if isinstance(node, Chars) and len(node.chars.ranges) == 1 and node.chars.ranges[0][0] == node.chars.ranges[0][1]:
        code = node.chars.ranges[0][0]
        if not (0xD800 <= code <= 0xDFFF or code == 0x7F):
            return code
    return None


def _json_text(code: int) -> str:
    return _JSON_ESCAPES.get(code, f"\\u{code:04x}") if code < 0x20 or code in _JSON_ESCAPES else chr(code)


@dataclass(frozen=True)
class PatternGrammar:
    """GBNF for the inside of a JSON string (no quotes), and whether lengths are enforced too."""

    body: str
    exact: bool


def pattern_gbnf(pattern: str, limits: SchemaLimits = SchemaLimits(), min_len: int = 0,
                 max_len: int | None = None, pointer: str = "") -> PatternGrammar:
    """GBNF for the JSON-encoded characters of strings matching ``pattern`` (search semantics).

    >>> pattern_gbnf("^a+$")
    PatternGrammar(body='[a]+', exact=True)
    >>> pattern_gbnf('^["]$').body
    '"\\\\\\\\\\\\""'
    >>> pattern_gbnf("^[a-z]+$", max_len=3)
    PatternGrammar(body='[a-z]{1,3}', exact=True)
    """
    branches = parse_pattern(pattern, limits, pointer)
    alternatives = []
    exact = True
    for branch in branches:
        items = list(branch.node.items) if isinstance(branch.node, Seq) else [branch.node]
        if not branch.start:
            items.insert(0, Repeat(FREE, 0, None))
        if not branch.end:
            items.append(Repeat(FREE, 0, None))
        fitted = _fit_length(items, min_len, max_len, limits)
        if fitted is None:
            exact = False
            fitted = items
        text = render(Seq(tuple(fitted)))
        if text is not None:
            alternatives.append(text)
    if not alternatives:
        raise SchemaRejected("the pattern matches no string the grammar can write", pointer)
    alternatives = list(dict.fromkeys(alternatives))
    body = alternatives[0] if len(alternatives) == 1 else "(" + " | ".join(alternatives) + ")"
    return PatternGrammar(body, exact)


def _copies(node: Node) -> int:
    """Largest product of bounded repeat counts along any nesting path inside ``node``."""
    if isinstance(node, Chars):
        return 1
    if isinstance(node, (Seq, Alt)):
        return max((_copies(i) for i in (node.items if isinstance(node, Seq) else node.options)), default=1)
    return (1 if node.high is None else max(node.high, 1)) * _copies(node.item)


def _fit_length(items: list[Node], min_len: int, max_len: int | None,
                limits: SchemaLimits) -> list[Node] | None:
    """Bound the top-level repeats so the sequence's length lies in [min_len, max_len], or None."""
    items = list(items)
    lows = sum(min_length(i) for i in items)
    if lows < min_len:
        for index, item in enumerate(items):
            if isinstance(item, Repeat) and item.high is None and min_length(item.item) > 0:
                unit = min_length(item.item)
                items[index] = Repeat(item.item, item.low + math.ceil((min_len - lows) / unit), None)
                break
        else:
            return None
    if max_len is not None:
        open_items = [i for i, item in enumerate(items) if isinstance(item, Repeat) and item.high is None]
        fixed = sum(max_length(item) for i, item in enumerate(items) if i not in open_items)
        fixed += sum(items[i].low * max_length(items[i].item) for i in open_items)
        if fixed > max_len or any(math.isinf(max_length(items[i].item)) for i in open_items):
            return None
        share = (max_len - fixed) // max(len(open_items), 1)
        for i in open_items:
            item = items[i]
            unit = max(max_length(item.item), 1)
            high = item.low + int(share // unit)
            if high * _copies(item.item) > limits.max_repetition_product:
                return None  # bounding it would multiply nested counts too far
            items[i] = Repeat(item.item, item.low, high)
    low_total = sum(min_length(i) for i in items)
    high_total = sum(max_length(i) for i in items)
    if low_total < min_len or (max_len is not None and high_total > max_len):
        return None
    return items
