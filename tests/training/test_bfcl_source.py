from __future__ import annotations

import json
import random

import pytest

pytest.importorskip("bfcl_eval")

from hammer.evaluation.bfcl_checker import check
from hammer.evaluation.bfcl_data import PYTHON_HINT
from hammer.evaluation.bfcl_tools import to_openai_tools
from hammer.training.bfcl_source import (
    CATEGORIES,
    bfcl_examples,
    function_key,
    load_entries,
    parse_call,
    parse_source,
    pick_value,
    to_example,
    xlam_tool,
)
from hammer.training.schema import openai_function

from hammer.prompt_format import render_tools

TEST_AND_TRAIN = ("simple_python", "multiple", "parallel_multiple", "live_simple", "live_multiple", "live_irrelevance",
                  "exec_parallel", "sql", "rest")


@pytest.fixture(scope="module")
def examples():
    # A budget no entry reaches, so every category shows up.
    return bfcl_examples(seed=0, max_tools_chars=100_000)


def _entries(category):
    from hammer.evaluation.bfcl_data import _data_file, data_dir

    if category in CATEGORIES:
        return [entry for entry, _ in load_entries(category)]
    with _data_file(data_dir(), category).open() as f:
        return [json.loads(line) for line in f]


class TestTools:
    @pytest.mark.parametrize("category", TEST_AND_TRAIN)
    def test_training_prompt_shows_the_tools_hammer_eval_sends(self, category):
        """Rendered through the xLAM path, every function is byte for byte what the server renders
        for the OpenAI tool `hammer eval` sends (BFCL's types, float hint, nested objects, enums)."""
        functions = [f for entry in _entries(category) for f in entry["function"]]
        assert functions
        for function in functions:
            sent = to_openai_tools([dict(function, description=function.get("description", "") + PYTHON_HINT)])[0]
            assert render_tools([openai_function(xlam_tool(function))]) == render_tools([sent[0]["function"]])


class TestAnswers:
    @pytest.mark.parametrize("category", ["live_simple", "live_multiple", "live_parallel", "live_parallel_multiple"])
    def test_trained_answers_pass_bfcls_checker(self, category, examples):
        """The one answer a training row teaches is one BFCL's own checker accepts for the entry (a
        required parameter is never left out, even where the answer file allows it), and most entries
        make a row (the rest: answers whose values contradict their schema, system prompts)."""
        entries = {entry["id"]: (entry, answer) for entry, answer in load_entries(category)}
        rows = [e for e in examples[0] if e["id"] in entries]
        assert len(rows) > 0.8 * len(entries)
        for row in rows:
            entry, answer = entries[row["id"]]
            _, names = to_openai_tools(entry["function"])  # sent name → BFCL's, as hammer eval maps replies back
            decoded = [{names[c["name"]]: c["arguments"]} for c in row["answers"]]
            verdict = check(entry["function"], decoded, answer, category)
            assert verdict["valid"], (row["id"], decoded, verdict)

    def test_optional_parameters_are_sometimes_left_out(self):
        present = [pick_value(["", "celsius"], random.Random(seed))[0] for seed in range(200)]
        assert 60 < sum(present) < 140

    def test_answers_of_the_wrong_type_are_skipped(self):
        built, report = bfcl_examples(["sql"], max_tools_chars=100_000)
        # sql's answer file gives strings where its schema says arrays of arrays (e.g. sql_0's conditions).
        assert "sql_0" not in {e["id"] for e in built} and report.skipped["answers of the wrong type"] > 0

    def test_executable_answers(self):
        assert parse_call("math.hypot(x=3, y=-4.0)") == {"name": "math_hypot", "arguments": {"x": 3, "y": -4.0}}
        for bad in ("f(3)", "f(x=g(1))", "x + 1", "f(**kw)"):
            with pytest.raises(ValueError):
                parse_call(bad)


class TestExamples:
    def test_every_category_contributes(self, examples):
        built, report = examples
        assert set(report.used) == set(CATEGORIES)
        assert len(built) == sum(report.used.values()) > 2000

    def test_rows_are_valid_xlam_with_gold_tools_and_few_distractors(self, examples):
        for example in examples[0]:
            names = [t["name"] for t in example["tools"]]
            assert len(names) == len(set(names)) and 1 <= len(names)
            called = {c["name"] for c in example["answers"]}
            assert called <= set(names)
            assert len(set(names) - called) <= 2 + (not called)

    def test_irrelevance_entries_answer_nothing(self, examples):
        irrelevant = [e for e in examples[0] if e["id"].startswith("live_irrelevance")]
        assert irrelevant and all(e["answers"] == [] and e["tools"] for e in irrelevant)

    def test_distractors_avoid_excluded_functions(self):
        excluded = frozenset(function_key(f) for e, _ in load_entries("exec_parallel") for f in e["function"])
        built, _ = bfcl_examples(["live_parallel", "exec_parallel"], exclude_functions=excluded, max_distractors=6,
                                 max_tools_chars=100_000)
        live = [e for e in built if e["id"].startswith("live_parallel")]
        assert live and not any(function_key(t) in excluded for e in live for t in e["tools"])
        unfiltered, _ = bfcl_examples(["live_parallel", "exec_parallel"], max_distractors=6, max_tools_chars=100_000)
        assert any(function_key(t) in excluded for e in unfiltered if e["id"].startswith("live_parallel")
                   for t in e["tools"])

    def test_tool_budget_keeps_prompts_short(self):
        built, report = bfcl_examples(["live_multiple"], max_tools_chars=800)
        assert all(len(json.dumps(e["tools"])) <= 800 for e in built)
        assert sum(report.skipped.values()) > 0

    def test_same_seed_same_examples(self):
        first, _ = bfcl_examples(["exec_parallel", "live_parallel"], seed=0)
        assert first == bfcl_examples(["exec_parallel", "live_parallel"], seed=0)[0]
        assert first != bfcl_examples(["exec_parallel", "live_parallel"], seed=1)[0]

    def test_questions_with_a_system_prompt_are_skipped(self):
        entry = {"id": "x", "question": [[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]],
                 "function": []}
        assert to_example(entry, [], [], random.Random(0)) is None


class TestSource:
    def test_names(self):
        assert parse_source("bfcl-offline") == CATEGORIES
        assert parse_source("bfcl-offline:sql,rest") == ("sql", "rest")
        assert parse_source("bfcl-offlinex") is None
        with pytest.raises(ValueError, match="simple_python"):
            parse_source("bfcl-offline:simple_python")  # a test category is never a source
