"""Does a string match a schema ``pattern``? In time linear in the pattern's size, never backtracking.

Python's ``re`` (which jsonschema uses) backtracks: ``^(a+)+$`` against 25 ``a`` and a ``!`` took
seconds with the GIL held. Here the pattern's parsed form (``hammer.server.grammar.regex``, the
same one the grammar is written from, so "matches" means what the grammar means) is run over
the set of positions a match can have reached, a bitset (a Python int): a character class
shifts the positions whose character it holds, a sequence chains, an alternative unions, a
repeat iterates until no new position appears. Work per node is a few big-integer operations,
whatever the string.

The character sets are the parser's safe ones (the intersection of Python's and ECMA-262's
readings), so a string matched here matches under both; ``$`` is the end of the string.
"""

from __future__ import annotations

from typing import Callable

from hammer.server.grammar.limits import SchemaLimits
from hammer.server.grammar.regex import Alt, Chars, Node, Repeat, Seq, parse_pattern

# Patterns reaching here were accepted with the server's limits (or are refused by the parser
# anyway): these bounds only keep the parser from refusing what the server accepted.
_ACCEPTING = SchemaLimits(max_repetition=4096, max_repetition_product=4096 * 4096, max_variable_repeats=1 << 30)


def pattern_matcher(pattern: str, limits: SchemaLimits = _ACCEPTING) -> Callable[[str], bool]:
    """A function telling whether a string matches ``pattern`` (searched, as JSON Schema says);
    raises ``SchemaRejected`` for a pattern outside the supported subset.

    >>> matches = pattern_matcher("^(a+)+$")
    >>> matches("a" * 25 + "!"), matches("aaa"), matches("")
    (False, True, False)
    >>> search = pattern_matcher("b{2}|^x")
    >>> search("abba"), search("xa"), search("ax"), search("ab")
    (True, True, False, False)
    """
    branches = parse_pattern(pattern, limits)

    def matches(text: str) -> bool:
        run = _Run(text)
        everywhere = (1 << (len(text) + 1)) - 1
        for branch in branches:
            ends = run.ends(branch.node, 1 if branch.start else everywhere)
            if ends >> len(text) if branch.end else ends:
                return True
        return False

    return matches


class _Run:
    """One string: positions as bits (bit ``p``: the match has read ``text[:p]``)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._at: dict[str, int] = {}  # character → the positions holding it
        for position, char in enumerate(text):
            self._at[char] = self._at.get(char, 0) | (1 << position)
        self._masks: dict[int, int] = {}  # id of a Chars node → the positions holding one of its characters

    def ends(self, node: Node, starts: int) -> int:
        """The positions a match of ``node`` begun at any of ``starts`` can end at."""
        if not starts:
            return 0
        if isinstance(node, Chars):
            return (starts & self._mask(node)) << 1
        if isinstance(node, Seq):
            for item in node.items:
                starts = self.ends(item, starts)
            return starts
        if isinstance(node, Alt):
            out = 0
            for option in node.options:
                out |= self.ends(option, starts)
            return out
        return self._repeat(node, starts)

    def _repeat(self, node: Repeat, starts: int) -> int:
        for _ in range(node.low):
            starts = self.ends(node.item, starts)
            if not starts:
                return 0
        reached = frontier = starts
        count = node.low
        # Only positions not reached before can lead anywhere new: at most len(text) + 1 rounds.
        while frontier and (node.high is None or count < node.high):
            frontier = self.ends(node.item, frontier) & ~reached
            reached |= frontier
            count += 1
        return reached

    def _mask(self, node: Chars) -> int:
        mask = self._masks.get(id(node))
        if mask is None:
            mask = 0
            for char, positions in self._at.items():
                if ord(char) in node.chars:
                    mask |= positions
            self._masks[id(node)] = mask
        return mask
