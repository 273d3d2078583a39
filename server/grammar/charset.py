"""Sets of code points as sorted, disjoint, inclusive ranges (immutable).

Regex character classes are computed with these, then written as GBNF classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

MAX = 0x10FFFF
SURROGATES = (0xD800, 0xDFFF)


@dataclass(frozen=True)
class CharSet:
    """Inclusive code point ranges.

    >>> CharSet.of((0x61, 0x7A)).union(CharSet.of((0x30, 0x39))).ranges
    ((48, 57), (97, 122))
    >>> CharSet.of((0x61, 0x7A)).complement().ranges
    ((0, 96), (123, 1114111))
    """

    ranges: tuple[tuple[int, int], ...] = ()

    @staticmethod
    def of(*ranges: tuple[int, int]) -> CharSet:
        return CharSet(_normalize(ranges))

    @staticmethod
    def chars(text: str) -> CharSet:
        return CharSet(_normalize((ord(c), ord(c)) for c in text))

    def union(self, other: CharSet) -> CharSet:
        return CharSet(_normalize(self.ranges + other.ranges))

    def complement(self) -> CharSet:
        out: list[tuple[int, int]] = []
        start = 0
        for low, high in self.ranges:
            if low > start:
                out.append((start, low - 1))
            start = high + 1
        if start <= MAX:
            out.append((start, MAX))
        return CharSet(tuple(out))

    def minus(self, other: CharSet) -> CharSet:
        return self.intersect(other.complement())

    def intersect(self, other: CharSet) -> CharSet:
        out = []
        for a_low, a_high in self.ranges:
            for b_low, b_high in other.ranges:
                low, high = max(a_low, b_low), min(a_high, b_high)
                if low <= high:
                    out.append((low, high))
        return CharSet(_normalize(out))

    def __contains__(self, code: int) -> bool:
        return any(low <= code <= high for low, high in self.ranges)

    def size(self) -> int:
        return sum(high - low + 1 for low, high in self.ranges)

    def empty(self) -> bool:
        return not self.ranges


def _normalize(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if out and low <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], high))
        else:
            out.append((low, high))
    return tuple(out)


ALL = CharSet.of((0, MAX))
ASCII_NON = CharSet.of((0x80, MAX))  # everything a Unicode-aware \d, \w or \s might add
DIGIT = CharSet.of((0x30, 0x39))
WORD = CharSet.of((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))
SPACE = CharSet.chars("\t\n\v\f\r ")
# Python's \s also matches \x1c-\x1f; with the non-ASCII range this covers ECMA's and Python's.
SPACE_WIDE = CharSet.of((0x09, 0x0D), (0x1C, 0x20), (0x80, MAX))
LINE_TERMINATORS = CharSet.chars("\n\r\u2028\u2029")
