"""GBNF text: string literals and character classes, pure ASCII, whatever the characters.

llama.cpp's grammar parser reads ``\\xHH``, ``\\uHHHH`` and ``\\UHHHHHHHH`` as code points, so
every character outside printable ASCII is written that way; the grammar text then holds no
NUL (which would end the C string early) and no raw control character.
"""

from __future__ import annotations

from typing import Iterable

MAX_CODE_POINT = 0x10FFFF
_SHORT = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_char(code: int, specials: str) -> str:
    """One code point as GBNF text; ``specials`` are printable characters to escape too.

    >>> escape_char(0x22, '"'), escape_char(0xE9, ""), escape_char(0x1F600, ""), escape_char(0x2D, "-")
    ('\\\\"', '\\\\xE9', '\\\\U0001F600', '\\\\x2D')
    """
    char = chr(code)
    if char in _SHORT:
        return _SHORT[char]
    if 0x20 <= code < 0x7F and char not in specials:
        return char
    if code == 0:
        raise ValueError("NUL never belongs in a grammar")  # a bug here, never client data
    if code <= 0xFF:
        return f"\\x{code:02X}"
    if code <= 0xFFFF:
        return f"\\u{code:04X}"
    return f"\\U{code:08X}"


def literal(text: str) -> str:
    """A GBNF string literal producing exactly ``text``.

    >>> print(literal('"a\\\\b\\n\\u00e9'))
    "\\"a\\\\b\\n\\xE9"
    """
    return '"' + "".join(escape_char(ord(c), "") for c in text) + '"'


def char_class(ranges: Iterable[tuple[int, int]]) -> str:
    """A GBNF character class for inclusive code point ranges (none may include NUL).

    Every non-alphanumeric character is escaped, so ``-``, ``^`` and ``]`` are always literal.

    >>> print(char_class([(0x30, 0x39), (0x2D, 0x2D), (0x5D, 0x5E)]))
    [0-9\\x2D\\x5D-\\x5E]
    """
    parts = []
    for low, high in ranges:
        first = _class_char(low)
        parts.append(first if low == high else f"{first}-{_class_char(high)}")
    return "[" + "".join(parts) + "]"


def _class_char(code: int) -> str:
    char = chr(code)
    if char.isascii() and char.isalnum():
        return char
    if code < 0x7F and code >= 0x20:
        return f"\\x{code:02X}"
    return escape_char(code, "")
