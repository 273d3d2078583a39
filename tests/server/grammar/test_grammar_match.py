"""The linear-time pattern matcher agrees with Python's re on the subset, and never backtracks."""

from __future__ import annotations

import random
import re

import pytest
from hammer.server.grammar.limits import SchemaRejected
from hammer.server.grammar.match import pattern_matcher
from hammer.server.grammar.validate import safe_validator

ATOMS = ["a", "b", "[ab]", "(a|b)", "(ab)", "a*", "b+", "(a|bb)?", "[^a]", ".", "a{2}", "(ab){1,3}", r"\d", "(a+)+"]


def test_it_agrees_with_python_re_on_random_patterns_and_strings():
    rng = random.Random(22)
    compared = 0
    for _ in range(3000):
        pattern = "".join(rng.choice(ATOMS) for _ in range(rng.randint(1, 4)))
        pattern = ("^" if rng.random() < 0.5 else "") + pattern + ("$" if rng.random() < 0.5 else "")
        if rng.random() < 0.2:
            pattern += "|" + rng.choice(ATOMS)
        try:
            matches = pattern_matcher(pattern)
        except SchemaRejected:
            continue
        for _ in range(5):
            text = "".join(rng.choice("ab1c") for _ in range(rng.randint(0, 8)))
            assert matches(text) == bool(re.search(pattern, text)), (pattern, text)
            compared += 1
    assert compared > 5000


@pytest.mark.parametrize("pattern,text,expected", [
    ("^(a+)+$", "a" * 5000 + "!", False),  # catastrophic for a backtracking engine
    ("^(a|aa)+$", "a" * 5000, True),
    ("^((a+b)+c)+$", "ab" * 2000 + "!", False),
    ("^(a{16}){16}$", "a" * 256, True),
])
def test_hostile_patterns_answer(pattern, text, expected):
    assert pattern_matcher(pattern)(text) is expected


def test_the_validator_matches_patterns_without_re():
    validator = safe_validator({"type": "object", "properties": {"x": {"type": "string", "pattern": "^(a+)+$"}}})
    assert validator.is_valid({"x": "aaa"})
    errors = [e.message for e in validator.iter_errors({"x": "a" * 40 + "!"})]
    assert errors == [f"'{'a' * 40}!' does not match '^(a+)+$'"]
    # A pattern outside the subset (never in a prepared schema) fails closed, naming it.
    assert [e.message for e in safe_validator({"pattern": r"(a)\1"}).iter_errors("aa")] == [
        "pattern '(a)\\\\1' is not supported"]
