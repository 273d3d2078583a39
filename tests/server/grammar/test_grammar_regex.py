"""hammer.server.grammar.regex: the pattern subset and its GBNF, one class per function."""

from __future__ import annotations

import pytest
from hammer.server.grammar import SchemaLimits, SchemaRejected, check_pattern
from hammer.server.grammar.regex import parse_pattern, pattern_gbnf


class TestCheckPattern:
    @pytest.mark.parametrize("pattern", [
        "^[a-z]+$", "abc", "^\\d{3}-\\d{4}$", "^(?:a|b)*c?$", "[^\"\\\\]+", "^\\u00e9\\x41.$",
        "^[\\w.+-]+@[\\w-]+\\.[\\w.]+$", "^\\s*\\S+$", "a{2,}?", "^[\\]\\[-]$", "^[a-]$", "}", "]",
        "^a$|^b$", "😀", "^$",
    ])
    def test_supported(self, pattern: str) -> None:
        check_pattern(pattern)

    @pytest.mark.parametrize("pattern, needle", [
        ("^(a)\\1$", "backreference"), ("^\\w\\b$", "word boundary"), ("\\B", "word boundary"),
        ("(?=a)", "lookahead"), ("(?!a)", "negative lookahead"), ("(?<=a)b", "lookbehind"),
        ("(?<n>a)", "named group"), ("(?P<n>a)", "named group"), ("\\p{L}", "Unicode property"),
        ("a^b", "'^' not at the start"), ("a$b", "'$' not at the end"), ("(a", "unbalanced '('"),
        ("a)", "unbalanced ')'"), ("[z-a]", "out of order"), ("^a{1,100000}$", "above the limit"),
        ("a{3,2}", "out of order"), ("*a", "nothing to repeat"), ("a**", "quantifier after a quantifier"),
        ("a{", "literal '{'"), ("[]", "empty character class"), ("[a", "unterminated"), ("\\k<a>", "named back"),
        ("(a*)*", "empty string"), ("(a{1,200}){1,200}", "combinations"), ("\\ud83d", "surrogate"),
        ("[😀]", "Basic Multilingual Plane"), ("😀+", "Basic Multilingual Plane"), ("(?i)a", "group modifier"),
        ("\\", "trailing backslash"), ("\\q", "escape"), ("\\0", "NUL"),
    ])
    def test_rejected_with_the_construct_named(self, pattern: str, needle: str) -> None:
        with pytest.raises(SchemaRejected) as info:
            check_pattern(pattern, SchemaLimits(), "/pattern")
        assert needle in info.value.message

    def test_pointer_is_kept(self) -> None:
        with pytest.raises(SchemaRejected) as info:
            check_pattern("(?=x)", SchemaLimits(), "/properties/city/pattern")
        assert info.value.pointer == "/properties/city/pattern" and "position 0" in info.value.message


class TestParsePattern:
    def test_anchors_per_top_level_branch(self) -> None:
        assert [(b.start, b.end) for b in parse_pattern("^a|b|c$")] == [(True, False), (False, False), (False, True)]

    def test_shorthands_are_the_safe_intersection(self) -> None:
        (branch,) = parse_pattern("^\\d$")
        assert branch.node.items[0].chars.ranges == ((0x30, 0x39),)
        (branch,) = parse_pattern("^\\D$")  # Python's \D excludes non-ASCII digits: stay ASCII
        assert all(high < 0x80 for _, high in branch.node.items[0].chars.ranges)


class TestPatternGbnf:
    def test_json_escapes_for_quote_backslash_and_controls(self) -> None:
        body = pattern_gbnf('^["\\\\\\n\\u0001]$').body
        assert '"\\\\\\""' in body and '"\\\\\\\\"' in body and '"\\\\n"' in body and '"\\\\u0001"' in body

    def test_text_is_ascii_without_nul(self) -> None:
        body = pattern_gbnf("^[^a]é😀.$").body
        assert body.isascii() and "\x00" not in body

    def test_unanchored_sides_get_free_text(self) -> None:
        assert pattern_gbnf("^ab$").body == '"ab"'
        assert pattern_gbnf("ab").body.endswith(")*") and pattern_gbnf("ab").body.startswith("(")

    def test_length_bounds_with_pattern(self) -> None:
        assert pattern_gbnf("^[a-z]*$", SchemaLimits(), 2, 4) == pattern_gbnf("^[a-z]{2,4}$")
        assert pattern_gbnf("^\\d+x$", SchemaLimits(), 0, 5).body == '[0-9]{1,4} "x"'
        assert pattern_gbnf("^a(bc)+$", SchemaLimits(), 0, 6).body == '"a" "bc"{1,2}'
        assert pattern_gbnf("^(a+b)+$", SchemaLimits(), 0, 6).exact is False  # left to post-validation
        assert pattern_gbnf("^abc$", SchemaLimits(), 0, 3).exact is True

    def test_unmatchable_pattern_is_rejected(self) -> None:
        with pytest.raises(SchemaRejected, match="matches no string"):
            pattern_gbnf("^[\\x01-\\x1f]$")  # too many controls to list: left out, nothing remains
