"""Training examples from the BFCL data that ships offline and that BFCL does not score.

The ``bfcl-eval`` wheel holds, besides its test categories, the user-contributed ``live_*``
categories and ``unused_datasets`` (``exec_*``, ``rest``, ``sql``). Each entry becomes one xLAM
example: the query is the entry's user message, the tools are the functions its answer calls
plus a few distractors (so prompts stay short), the answer is one concrete call list drawn from
BFCL's possible answers. ``live_irrelevance`` entries answer ``[]``. ``chatable`` is left out: its
questions come without functions or answers, and many are the test's ``simple_python`` queries.

Tools are converted exactly as ``hammer eval`` sends BFCL functions (``evaluation/bfcl_tools.py``:
BFCL's type table, the Python hint, dots in names as underscores), so a model is trained on the
tool layout it is tested with. Whether an example overlaps the test is ``training/heldout.py``'s
business; the distractors drawn here already avoid test functions.
"""

from __future__ import annotations

import ast
import json
import operator
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hammer.evaluation.bfcl_data import PYTHON_HINT, _data_file, data_dir
from hammer.evaluation.bfcl_tools import openai_name, to_openai_tools
from hammer.training.schema import openai_function
from hammer.training.xlam import Example, parse_example

SOURCE = "bfcl-offline"
LIVE_CATEGORIES = ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple", "live_irrelevance")
UNUSED_CATEGORIES = ("exec_simple", "exec_multiple", "exec_parallel", "exec_parallel_multiple", "rest", "sql")
CATEGORIES = LIVE_CATEGORIES + UNUSED_CATEGORIES
# What ``rest`` lists as its answer is the API's reply; the calls that produced it are here, by position.
REST_CALLS = Path("unused_datasets/executable_eval_sanity_check/api_status_check_ground_truth_rest.json")
DEFAULT_MAX_DISTRACTORS = 2
# About 350 tokens of tool JSON: with the ~350-token instructions, the query and the answer a row
# is about 600 tokens (measured on SmolLM2's tokenizer: 1800 characters gave 770 on average,
# 2400 left a quarter of rows over 1024), so a CPU trains on a few hundred in under half an hour.
DEFAULT_MAX_TOOLS_CHARS = 1200


@dataclass
class SourceReport:
    """How many entries of each category became examples, and why the others did not."""

    used: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # reason → count

    def __str__(self) -> str:
        used = ", ".join(f"{c} {n}" for c, n in self.used.items())
        skipped = ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common())
        return f"BFCL entries used: {used}" + (f"; skipped: {skipped}" if skipped else "")


def parse_source(source: str) -> tuple[str, ...] | None:
    """The categories a ``--input`` of ``bfcl-offline[:cat,cat]`` names; ``None`` for any other input.

    >>> parse_source("bfcl-offline:live_simple,sql"), parse_source("data.json")
    (('live_simple', 'sql'), None)
    >>> len(parse_source("bfcl-offline")) == len(CATEGORIES)
    True
    """
    name, _, listed = str(source).partition(":")
    if name != SOURCE:
        return None
    categories = tuple(c for c in listed.split(",") if c) or CATEGORIES
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        raise ValueError(f"unknown BFCL training category {unknown[0]!r}; choose from {', '.join(CATEGORIES)}")
    return categories


def xlam_tool(function: Mapping[str, Any]) -> dict[str, Any]:
    """A BFCL function as an xLAM tool whose rendering is the OpenAI tool ``hammer eval`` sends.

    Parameters keep their converted JSON Schema; one that is neither required nor defaulted gets
    xLAM's ``, optional`` so ``training.schema.openai_function`` leaves it out of ``required``, and
    a required one with a default gets ``required: true``.

    >>> xlam_tool({"name": "math.area", "description": "Area.", "parameters": {"type": "dict",
    ...     "properties": {"r": {"type": "float", "description": "Radius."}, "unit": {"type": "string"}},
    ...     "required": ["r"]}})
    {'name': 'math_area', 'description': 'Area. Note that the provided function is in Python 3 syntax.', 'parameters': {'r': {'type': 'number', 'description': 'Radius. This is a float type value.', 'format': 'float'}, 'unit': {'type': 'string, optional'}}}
    """
    hinted = dict(function, description=function.get("description", "") + PYTHON_HINT)
    sent = to_openai_tools([hinted])[0][0]["function"]
    required = set(sent["parameters"].get("required", []))
    parameters = {}
    for name, prop in sent["parameters"]["properties"].items():
        spec = dict(prop)
        if name not in required and "default" not in spec:
            spec["type"] = f"{spec['type']}, optional"
        elif name in required and "default" in spec:
            spec["required"] = True
        parameters[name] = spec
    return {"name": sent["name"], "description": sent["description"], "parameters": parameters}


def pick_value(allowed: Sequence[Any], rng: random.Random, required: bool = False,
               schema: Mapping[str, Any] | None = None) -> tuple[bool, Any]:
    """One of BFCL's allowed values for a parameter, as ``(present, value)``.

    ``""`` among the allowed values means the parameter may be left out: an optional one is, half
    the time (always when nothing else is allowed); a ``required`` one never is, as BFCL's checker
    wants it whatever the answer file says. A dict of allowed-value lists (BFCL's form for an
    object parameter) is resolved key by key, with ``schema``'s ``required`` and ``properties``.

    >>> rng = random.Random(0)
    >>> pick_value(["Paris"], rng), pick_value([""], rng)
    ((True, 'Paris'), (False, None))
    >>> pick_value([{"size": ["large"], "milk": ["", "oat"]}], random.Random(5))
    (True, {'size': 'large', 'milk': 'oat'})
    >>> sorted({pick_value(["", 5], random.Random(s))[0] for s in range(20)}), pick_value(["", 5], rng, True)
    ([False, True], (True, 5))
    """
    options = [value for value in allowed if value != ""]
    if not options or (not required and len(options) < len(allowed) and rng.random() < 0.5):
        return False, None
    return True, _concrete(rng.choice(options), rng, schema or {})


def _concrete(value: Any, rng: random.Random, schema: Mapping[str, Any]) -> Any:
    if isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
        properties, required = schema.get("properties") or {}, set(schema.get("required") or ())
        picked = {key: pick_value(allowed, rng, key in required, properties.get(key))
                  for key, allowed in value.items()}
        return {key: v for key, (present, v) in picked.items() if present}
    if isinstance(value, list):
        return [_concrete(item, rng, schema.get("items") or {}) for item in value]
    return value


def answer_calls(ground_truth: Sequence[Mapping[str, Mapping[str, Sequence[Any]]]], rng: random.Random,
                 functions: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """xLAM calls drawn from BFCL possible answers (``[{name: {param: [allowed, ...]}}]``), the
    parameters that ``functions`` (BFCL's) require always present.

    >>> answer_calls([{"geo.find": {"city": ["Oslo", "oslo"], "limit": ["", 5]}}], random.Random(3))
    [{'name': 'geo_find', 'arguments': {'city': 'Oslo', 'limit': 5}}]
    """
    schemas = {f["name"]: f.get("parameters") or {} for f in functions}
    calls = []
    for item in ground_truth:
        for name, params in item.items():
            schema = schemas.get(name, {})
            properties, required = schema.get("properties") or {}, set(schema.get("required") or ())
            picked = {param: pick_value(allowed, rng, param in required, properties.get(param))
                      for param, allowed in params.items()}
            calls.append({"name": openai_name(name),
                          "arguments": {param: v for param, (present, v) in picked.items() if present}})
    return calls


_OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos,
}


def _literal(node: ast.expr) -> Any:
    """A literal, or arithmetic on numbers (``1/6``), as the executable answers write some values."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](_literal(node.left), _literal(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](_literal(node.operand))
        raise


def _json_value(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    return value


def parse_call(text: str) -> dict[str, Any]:
    """An executable answer (``f(x=1, y='a')``) as an xLAM call; ``ValueError`` for anything else.

    >>> parse_call("calc.prob(n=20, k=5, p=1/5, at=(1, 2))")
    {'name': 'calc_prob', 'arguments': {'n': 20, 'k': 5, 'p': 0.2, 'at': [1, 2]}}
    """
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"not a call: {exc}") from None
    if not isinstance(node, ast.Call) or node.args or any(k.arg is None for k in node.keywords):
        raise ValueError(f"not a call with keyword arguments only: {text[:80]}")
    try:
        # JSON has no tuples: BFCL sends tuple parameters as arrays.
        arguments = {k.arg: _json_value(_literal(k.value)) for k in node.keywords}
    except (ValueError, TypeError, ZeroDivisionError, SyntaxError) as exc:
        raise ValueError(f"argument is not a literal: {exc}") from None
    return {"name": openai_name(ast.unparse(node.func)), "arguments": arguments}


def user_query(question: Sequence[Any]) -> str | None:
    """The user message of a single-turn, user-only BFCL question; ``None`` for anything else
    (several turns, a system prompt), which an xLAM ``query`` cannot hold.

    >>> user_query([[{"role": "user", "content": "Hi"}]]), user_query([{"role": "user", "content": "Hi"}])
    ('Hi', 'Hi')
    >>> user_query([[{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}]]) is None
    True
    """
    turn = question[0] if question and isinstance(question[0], list) else question
    if (len(question) != 1 and turn is not question) or len(turn) != 1 or turn[0].get("role") != "user":
        return None
    content = turn[0].get("content")
    return content if isinstance(content, str) and content.strip() else None


def to_example(entry: Mapping[str, Any], calls: list[dict[str, Any]], distractor_pool: Sequence[dict[str, Any]],
               rng: random.Random, max_distractors: int = DEFAULT_MAX_DISTRACTORS,
               max_tools_chars: int = DEFAULT_MAX_TOOLS_CHARS) -> Example | None:
    """One xLAM example: the functions ``calls`` use plus up to ``max_distractors`` others (the
    entry's own first, then ``distractor_pool``), within ``max_tools_chars`` of tool JSON, shuffled.
    With no calls (an irrelevance entry) one of the entry's functions is kept at least. ``None``
    when the question is not one user message or the needed tools alone exceed the budget; a call
    to a function the entry does not list is left for ``parse_example`` to reject.

    >>> f = {"name": "f", "description": "F.", "parameters": {"type": "dict", "properties": {}}}
    >>> g = {**f, "name": "g"}
    >>> ex = to_example({"id": "e", "question": [[{"role": "user", "content": "q"}]], "function": [f, g]},
    ...                 [{"name": "f", "arguments": {}}], [], random.Random(0), max_distractors=0)
    >>> ex["query"], [t["name"] for t in ex["tools"]], ex["answers"]
    ('q', ['f'], [{'name': 'f', 'arguments': {}}])
    """
    query = user_query(entry["question"])
    if query is None:
        return None
    tools = [xlam_tool(f) for f in entry["function"]]
    called = {call["name"] for call in calls}
    gold = [t for t in tools if t["name"] in called]
    others = [t for t in tools if t["name"] not in called]
    rng.shuffle(others)
    if not gold:  # an irrelevance entry: its own functions are the candidates, none of them fits
        gold, others = others[:1], others[1:]
    wanted = rng.randint(0, max_distractors)
    candidates = others + [t for t in rng.sample(list(distractor_pool), min(len(distractor_pool), wanted + 2))
                           if t["name"] not in {x["name"] for x in tools}]
    chosen = list(gold)
    size = len(json.dumps(chosen))
    if size > max_tools_chars:
        return None
    for tool in candidates:
        if len(chosen) - len(gold) >= wanted:
            break
        extra = len(json.dumps(tool)) + 2
        if size + extra <= max_tools_chars:
            chosen.append(tool)
            size += extra
    rng.shuffle(chosen)
    return {"id": entry["id"], "query": query, "tools": chosen, "answers": calls}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_entries(category: str, directory: Path | None = None) -> list[tuple[dict[str, Any], Any]]:
    """``(entry, answer)`` pairs of a training category: ``answer`` is BFCL's possible answers
    (a list of ``{name: {param: [allowed]}}``), a list of executable call strings, or ``[]``."""
    directory = directory or data_dir()
    if category in LIVE_CATEGORIES:
        entries = _read_jsonl(_data_file(directory, category))
        if category == "live_irrelevance":
            return [(entry, []) for entry in entries]
        answers = {row["id"]: row["ground_truth"] for row in _read_jsonl(_data_file(directory / "possible_answer", category))}
        return [(entry, answers[entry["id"]]) for entry in entries]
    entries = _read_jsonl(_data_file(directory / "unused_datasets" / "question", category))
    if category == "rest":
        calls = {f"rest_{row['idx']}": [row["ground_truth"]] for row in _read_jsonl(directory / REST_CALLS)}
        return [(entry, calls[entry["id"]]) for entry in entries if entry["id"] in calls]
    answers = {row["id"]: row["ground_truth"]
               for row in _read_jsonl(_data_file(directory / "unused_datasets" / "possible_answer", category))}
    return [(entry, answers[entry["id"]]) for entry in entries]


def resolve_calls(answer: Sequence[Any], rng: random.Random,
                  functions: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """Concrete calls from either answer form: executable strings or possible-answer dicts."""
    if all(isinstance(item, str) for item in answer):
        return [parse_call(item) for item in answer]
    return answer_calls(answer, rng, functions)


def fits_schema(example: Example) -> bool:
    """Whether every call's arguments validate against its tool's JSON Schema (types, required,
    no unknown names): BFCL's answer files have a few values of the wrong type, not worth teaching.
    A schema that is itself invalid (BFCL quirks) does not count against the example."""
    import jsonschema

    tools = {tool["name"]: openai_function(tool)["parameters"] for tool in example["tools"]}
    for call in example["answers"]:
        try:
            jsonschema.validate(call["arguments"], tools[call["name"]])
        except jsonschema.ValidationError:
            return False
        except jsonschema.SchemaError:
            continue
    return True


def function_key(function: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    """A function's identity for overlap checks: its sent name and its parameter names.

    >>> function_key({"name": "a.b", "parameters": {"properties": {"y": {}, "x": {}}}})
    ('a_b', ('x', 'y'))
    >>> function_key({"name": "a_b", "parameters": {"y": {}, "x": {}}})  # an xLAM tool
    ('a_b', ('x', 'y'))
    """
    parameters = function.get("parameters") or {}
    if isinstance(parameters.get("properties"), dict) and parameters.get("type") in ("dict", "object", None):
        parameters = parameters["properties"]
    return openai_name(function["name"]), tuple(sorted(parameters))


def bfcl_examples(categories: Iterable[str] = CATEGORIES, seed: int = 0, *,
                  exclude_functions: frozenset[tuple[str, tuple[str, ...]]] = frozenset(),
                  max_distractors: int = DEFAULT_MAX_DISTRACTORS, max_tools_chars: int = DEFAULT_MAX_TOOLS_CHARS,
                  directory: Path | None = None) -> tuple[list[Example], SourceReport]:
    """The examples of ``categories``, in category and file order, and what was used and skipped.

    Each entry draws from its own generator (seeded by ``seed`` and its id); distractors come from
    the chosen categories' functions except ``exclude_functions`` (the test's, see
    ``training.heldout``).
    """
    categories = list(categories)
    loaded = {category: load_entries(category, directory) for category in categories}
    pool: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
    for pairs in loaded.values():
        for entry, _ in pairs:
            for function in entry["function"]:
                key = function_key(function)
                if key not in exclude_functions:
                    pool.setdefault(key, xlam_tool(function))
    distractors = list(pool.values())
    report = SourceReport()
    examples: list[Example] = []
    for category in categories:
        for entry, answer in loaded[category]:
            rng = random.Random(f"{seed}:{entry['id']}")
            try:
                calls = resolve_calls(answer, rng, entry["function"])
            except ValueError:
                report.skipped["answers that are not literal calls"] += 1
                continue
            if user_query(entry["question"]) is None:
                report.skipped["multi-turn or system-prompt questions"] += 1
                continue
            if not entry["function"]:
                report.skipped["without functions"] += 1
                continue
            example = to_example(entry, calls, distractors, rng, max_distractors, max_tools_chars)
            if example is None:
                report.skipped[f"whose tools exceed {max_tools_chars} characters"] += 1
                continue
            try:
                parse_example(example)  # every call names a listed function and only its parameters
            except ValueError:
                report.skipped["answers that do not fit their functions"] += 1
                continue
            if not fits_schema(example):
                report.skipped["answers of the wrong type"] += 1
                continue
            examples.append(example)
            report.used[category] += 1
    return examples, report
