"""GBNF for the string formats the grammar enforces, with their length ranges.

Only values valid in every month and year are produced (no February 29th, no leap second),
so each generated value is valid for any format checker.
"""

from __future__ import annotations

_DAY_ANY_MONTH = '("0" [1-9] | "1" [0-9] | "2" [0-8])'
_DATE = (
    '[0-9]{4} "-" ('
    f'("0" [1-9] | "1" [0-2]) "-" {_DAY_ANY_MONTH}'
    ' | ("0" [13-9] | "1" [0-2]) "-" ("29" | "30")'
    ' | ("0" [13578] | "1" [02]) "-" "31")'
)
_TIME = ('([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,6})? '
         '("Z" | [+\\x2D] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9])')
_HEX = "[0-9a-f]"

# format → (GBNF for the characters inside the quotes, shortest length, longest length)
FORMATS: dict[str, tuple[str, int, int]] = {
    "date": (_DATE, 10, 10),
    "time": (_TIME, 9, 21),
    "date-time": (f'{_DATE} "T" {_TIME}', 20, 32),
    "uuid": (f'{_HEX}{{8}} "-" {_HEX}{{4}} "-" {_HEX}{{4}} "-" {_HEX}{{4}} "-" {_HEX}{{12}}', 36, 36),
}


def format_gbnf(name: str, min_len: int, max_len: int | None) -> str | None:
    """GBNF for ``name`` when every value it produces fits the length bounds, else None.

    >>> format_gbnf("uuid", 0, None)[:18]
    '[0-9a-f]{8} "-" [0'
    >>> format_gbnf("date", 0, 5) is None
    True
    """
    if name not in FORMATS:
        return None
    body, shortest, longest = FORMATS[name]
    if shortest < min_len or (max_len is not None and longest > max_len):
        return None
    return body
