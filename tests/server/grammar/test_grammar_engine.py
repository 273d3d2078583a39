"""Grammars from hammer.server.grammar against the real llama.cpp grammar engine, in a child process.

The child (engine_probe.py) parses each grammar with ``llama_sampler_init_grammar`` and walks
it with random logits; a crash kills the child, not pytest, and is reported with its grammar.
"""

from __future__ import annotations

import json
import string
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest

pytest.importorskip("llama_cpp")
hypothesis = pytest.importorskip("hypothesis")
from hammer.server.grammar import SchemaRejected, checked_schema, sequence_gbnf  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PROBE = Path(__file__).with_name("engine_probe.py")
PREFIX, SUFFIX = "```\n", "\n```"


class Engine:
    """One long-lived probe child, restarted when a grammar kills it."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(PROBE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        assert json.loads(self.proc.stdout.readline()) == {"ready": True}

    def ask(self, grammar: str, walks: int = 2, max_tokens: int = 80, seed: int = 0) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"grammar": grammar, "walks": walks, "max_tokens": max_tokens,
                                          "seed": seed}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.proc = None
            pytest.fail(f"llama.cpp died (exit {code}) on this grammar:\n{grammar}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    probe = Engine()
    yield probe
    probe.close()


def check(engine: Engine, schema: Any, validate: bool, walks: int = 2, seed: int = 0) -> str:
    """Prepare + write the grammar; it must parse, and finished walks must validate. Returns "rejected"/"ok"."""
    try:
        checked_schema(schema)
        grammar = sequence_gbnf(PREFIX, schema, SUFFIX)
    except SchemaRejected:
        return "rejected"
    assert grammar.isascii() and "\x00" not in grammar
    answer = engine.ask(grammar, walks=walks, seed=seed)
    assert answer["parsed"], f"llama.cpp refused the grammar:\n{grammar}"
    for walk in answer["walks"]:
        assert not walk["stuck"], f"walk stuck at {walk['text']!r} in:\n{grammar}"
        if walk["finished"]:
            text = walk["text"]
            assert text.startswith(PREFIX) and text.endswith(SUFFIX), text
            value = json.loads(text[len(PREFIX):-len(SUFFIX)])
            if validate:
                jsonschema.Draft202012Validator(schema).validate(value)
    return "ok"


def _nest(depth: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "array", "items": schema}
    return schema


REPRODUCERS: list[tuple[str, Any]] = [
    ("quote in enum", {"enum": ["a\"b"]}),
    ("quote in const", {"const": "a\"b\\c"}),
    ("NUL in enum", {"enum": ["\u0000"]}),
    ("NUL in const", {"const": "x\u0000y"}),
    ("NUL in property name",
     {"type": "object", "properties": {"a\u0000": {"type": "string"}}, "required": ["a\u0000"]}),
    ("newline and control in enum", {"enum": ["a\nb", "\u0001", "\t"]}),
    ("backreference", {"type": "string", "pattern": "^(a)\\1$"}),
    ("word boundary", {"type": "string", "pattern": "^\\w\\b$"}),
    ("huge regex repetition", {"type": "string", "pattern": "^a{1,100000}$"}),
    ("huge maxItems", {"type": "array", "items": {"type": "integer"}, "maxItems": 10000}),
    ("huge minLength", {"type": "string", "minLength": 1000000000}),
    ("huge minItems", {"type": "array", "minItems": 30000000}),
    ("100k enum", {"enum": [f"v{i}" for i in range(100_000)]}),
    ("nested 401 deep", _nest(401)),
    ("unanchored pattern", {"type": "string", "pattern": "ab+c"}),
    ("not", {"not": {"type": "string"}}),
    ("false subschema", {"type": "object", "properties": {"a": False, "b": {"type": "null"}}, "required": ["b"]}),
    ("root false", False),
]


@pytest.mark.parametrize("schema", [s for _, s in REPRODUCERS], ids=[name for name, _ in REPRODUCERS])
def test_reproducers_become_grammars_or_rejections(engine: Engine, schema: Any) -> None:
    check(engine, schema, validate=True, walks=2)


# --- hostile schemas ---------------------------------------------------------------------------

HOSTILE_TEXT = st.text(alphabet=st.sampled_from(
    list("ab\"\\\n\r\t\x00\x01\x1f\x7f/{}[]:,é😀\u2028\ufeff") + list(string.ascii_letters[:6])), max_size=6)
PATTERNS = st.sampled_from([
    "^[a-z]+$", "^\\d{2,4}$", "ab", "^a|b$", "^[^\"\\\\]*$", "^\\s?x$", "^(?:ab|c){1,3}$", "^.$", "^\"\\\\$",
    "^\\u00e9+$", "^[\\w-]{3}$", "(a)\\1", "\\bx", "(?=a)", "^a{1,99999}$", "a(", "(a*)*", "^[\\x01-\\x1f]$", "[",
])
ENFORCED_LEAVES = st.one_of(
    st.builds(lambda: {"type": "string"}),
    st.builds(lambda n: {"type": "string", "maxLength": n}, st.integers(0, 8)),
    st.builds(lambda a, b: {"type": "string", "minLength": a, "maxLength": a + b},
              st.integers(0, 4), st.integers(0, 4)),
    st.builds(lambda p: {"type": "string", "pattern": p}, PATTERNS),
    st.builds(lambda f: {"type": "string", "format": f}, st.sampled_from(["date", "time", "date-time", "uuid"])),
    st.builds(lambda lo, w: {"type": "integer", "minimum": lo, "maximum": lo + w},
              st.integers(-2000, 2000), st.integers(0, 3000)),
    st.builds(lambda: {"type": "integer"}), st.builds(lambda: {"type": "number"}),
    st.builds(lambda: {"type": "boolean"}), st.builds(lambda: {"type": "null"}),
    st.builds(lambda vs: {"enum": vs}, st.lists(st.one_of(HOSTILE_TEXT, st.integers(), st.none()), min_size=1,
                                                max_size=4)),
    st.builds(lambda v: {"const": v}, HOSTILE_TEXT),
    st.just({}), st.just(True), st.just(False),
)
HOSTILE_ONLY = st.one_of(
    st.builds(lambda n: {"type": "string", "minLength": n}, st.sampled_from([10**9, 2000])),
    st.builds(lambda n: {"type": "array", "maxItems": n, "minItems": n}, st.sampled_from([10**7, 100])),
    st.just({"$ref": "#"}), st.just({"$ref": "http://x/y"}), st.just({"not": {}}), st.just({"multipleOf": 3}),
    st.just({"$ref": "#/$defs/missing"}), st.just(_nest(40)), st.just({"enum": list(range(5000))}),
    st.just({"type": "number", "minimum": 0.5, "maximum": 2.5}),
)


def objects(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.builds(
        lambda props, req, extra: {"type": "object", "properties": props,
                                   "required": [k for k, r in zip(props, req) if r],
                                   **({"additionalProperties": extra} if extra is not None else {})},
        st.dictionaries(HOSTILE_TEXT, children, max_size=4), st.lists(st.booleans(), min_size=4, max_size=4),
        st.one_of(st.none(), st.just(False), st.just(True)))


def composites(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        objects(children),
        st.builds(lambda it, lo, w: {"type": "array", "items": it, "minItems": lo, "maxItems": lo + w},
                  children, st.integers(0, 2), st.integers(0, 3)),
        st.builds(lambda pre, it: {"type": "array", "prefixItems": pre, "items": it},
                  st.lists(children, min_size=1, max_size=3), st.one_of(st.just(False), children)),
        st.builds(lambda bs: {"anyOf": bs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda a, b: {"allOf": [a, b]}, children, children),
        st.builds(lambda inner: {"$defs": {"d": inner}, "type": "object", "properties": {"x": {"$ref": "#/$defs/d"}}},
                  children),
    )


ENFORCED_SCHEMAS = st.recursive(ENFORCED_LEAVES, composites, max_leaves=6)
HOSTILE_SCHEMAS = st.recursive(st.one_of(ENFORCED_LEAVES, HOSTILE_ONLY), composites, max_leaves=6)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(schema=ENFORCED_SCHEMAS, seed=st.integers(0, 1000))
def test_enforced_schemas_parse_and_walks_validate(engine: Engine, schema: Any, seed: int) -> None:
    check(engine, schema, validate=True, walks=1, seed=seed)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(schema=HOSTILE_SCHEMAS)
def test_hostile_schemas_never_hurt_the_engine(engine: Engine, schema: Any) -> None:
    check(engine, schema, validate=False, walks=0)
