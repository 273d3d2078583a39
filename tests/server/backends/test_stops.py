"""Stop strings: what is emitted and held back, against a plain reference, and long stops."""

from __future__ import annotations

import random

from hammer.server.backends.stops import StopMatcher


def reference(stops: tuple[str, ...], pieces: list[str]) -> tuple[str, bool]:
    """The text up to where a stop first ends (the longest stop ending there), searching the whole text."""
    text = "".join(pieces)
    for end in range(1, len(text) + 1):
        ending = [s for s in stops if s and text[:end].endswith(s)]
        if ending:
            return text[:end - len(max(ending, key=len))], True
    return text, False


def run(stops: tuple[str, ...], pieces: list[str]) -> tuple[str, bool]:
    matcher = StopMatcher(stops)
    out = "".join(matcher.feed(p) for p in pieces) + matcher.flush()
    return out, matcher.stopped


def test_it_agrees_with_the_reference_on_random_streams():
    rng = random.Random(22)
    for _ in range(5000):
        stops = tuple("".join(rng.choice("ab") for _ in range(rng.randint(0, 4))) for _ in range(rng.randint(0, 3)))
        pieces = ["".join(rng.choice("abc") for _ in range(rng.randint(0, 3))) for _ in range(rng.randint(0, 6))]
        assert run(stops, pieces) == reference(stops, pieces), (stops, pieces)


def test_held_back_text_is_only_what_could_still_become_a_stop():
    matcher = StopMatcher(("é" + "x" * 1000,))
    assert matcher.feed("ab") == "ab"
    assert matcher.feed("é" + "x" * 500) == ""  # all of it may still be the stop
    assert matcher.feed("y") == "é" + "x" * 500 + "y"  # not any more
    assert not matcher.stopped


def test_a_long_stop_is_found_across_many_pieces():
    stop = "é" + "x" * 1023
    matcher = StopMatcher((stop,))
    emitted = matcher.feed("answer: ") + "".join(matcher.feed(c) for c in stop + "after")
    assert emitted == "answer: " and matcher.stopped and matcher.flush() == ""
