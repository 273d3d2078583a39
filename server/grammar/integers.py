"""GBNF for JSON numbers, and for integers within a range (minimum/maximum enforced exactly).

Integers are written without a fraction or exponent and without leading zeros; a range
becomes alternatives by digit count, split where digits stop being free (the classic
range-to-regex construction).
"""

from __future__ import annotations

# Unbounded integers get at most this many digits, as in llama.cpp's own converter.
MAX_DIGITS = 16
NUMBER = '"-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?'
INTEGER = '"-"? ("0" | [1-9] [0-9]{0,15})'


def integer_range(low: int | None, high: int | None) -> str:
    """GBNF for the decimal integers in [low, high] (None: unbounded up to 16 digits).

    >>> integer_range(0, 255)
    '([0-9] | [1-9] [0-9] | "1" [0-9]{2} | "2" [0-4] [0-9] | "25" [0-5])'
    >>> integer_range(-5, 5)
    '("-" [1-5] | [0-5])'
    """
    limit = 10 ** MAX_DIGITS - 1
    if low is None:
        low = min(-limit, high if high is not None else -limit)
    if high is None:
        high = max(limit, low, 10 ** len(str(abs(low))) - 1)
    alternatives: list[str] = []
    if low < 0:
        negative_high = min(high, -1)
        alternatives += ['"-" ' + alt for alt in _positive(-negative_high, -low)]
    if high >= 0:
        alternatives += _positive(max(low, 0), high)
    return alternatives[0] if len(alternatives) == 1 else "(" + " | ".join(alternatives) + ")"


def _positive(low: int, high: int) -> list[str]:
    """Alternatives for non-negative integers in [low, high]."""
    out = []
    for digits in range(len(str(low)), len(str(high)) + 1):
        first = max(low, 10 ** (digits - 1) if digits > 1 else 0)
        last = min(high, 10 ** digits - 1)
        if first <= last:
            out += _same_length(str(first), str(last))
    return out


def _same_length(low: str, high: str) -> list[str]:
    """Alternatives for the numbers between two equally long digit strings."""
    if low == high:
        return [f'"{low}"']
    if len(low) == 1:
        return [f"[{low}-{high}]"]
    rest = len(low) - 1
    if low[1:] == "0" * rest and high[1:] == "9" * rest:
        return [f"[{low[0]}-{high[0]}] " + _free(rest)]
    if low[0] == high[0]:
        return [_join(f'"{low[0]}"', tail) for tail in _same_length(low[1:], high[1:])]
    # The first and last leading digits join the free middle when their tails are free too.
    first, last = int(low[0]), int(high[0])
    out = []
    if low[1:] != "0" * rest:
        out += [_join(f'"{low[0]}"', tail) for tail in _same_length(low[1:], "9" * rest)]
        first += 1
    tail_free = high[1:] == "9" * rest
    if not tail_free:
        last -= 1
    if first <= last:
        digit = f'"{first}"' if first == last else f"[{first}-{last}]"
        out.append(digit + " " + _free(rest))
    if not tail_free:
        out += [_join(f'"{high[0]}"', tail) for tail in _same_length("0" * rest, high[1:])]
    return out


def _free(count: int) -> str:
    return "[0-9]" if count == 1 else f"[0-9]{{{count}}}"


def _join(head: str, tail: str) -> str:
    """Merge adjacent literals: '"2"' + '"5" [0-5]' → '"25" [0-5]'."""
    if tail.startswith('"'):
        end = tail.index('"', 1)
        return head[:-1] + tail[1:end] + '"' + tail[end + 1:]
    return f"{head} {tail}"
