from __future__ import annotations

import json
import random

import pytest

pytest.importorskip("bfcl_eval")

from hammer.evaluation.bfcl_data import _data_file, data_dir
from hammer.training.bfcl_source import bfcl_examples, to_example
from hammer.training.build import load_source
from hammer.training.heldout import TEST_CATEGORIES, drop_test_overlap, load_test_set, overlap, query_key, question_text

from hammer.cli import main

SOURCE = "bfcl-offline:live_simple,exec_simple,exec_parallel_multiple"


@pytest.fixture(scope="module")
def heldout():
    return load_test_set()


def _test_entries(category):
    with _data_file(data_dir(), category).open() as f:
        return [json.loads(line) for line in f]


class TestTestSet:
    def test_holds_every_test_query_and_function(self, heldout):
        entries = [e for c in TEST_CATEGORIES for e in _test_entries(c)]
        assert len(heldout.queries) > 0.9 * len(entries)  # a few questions repeat across categories
        java = _test_entries("simple_java")[0]
        assert query_key(question_text(java["question"])) in heldout.queries


class TestDropOverlap:
    def test_a_test_entry_made_into_a_training_row_is_dropped(self, heldout):
        entry = _test_entries("simple_python")[7]
        row = to_example(entry, [], [], random.Random(0))  # its function, answering [] (as live_irrelevance does)
        assert overlap(row, heldout) == "query"
        renamed = {**row, "query": "a question no test entry asks"}
        assert overlap(renamed, heldout) == "function"  # its function alone is enough
        kept, dropped = drop_test_overlap([row, renamed], heldout)
        assert kept == [] and dropped == {"query": 1, "function": 1}

    def test_a_query_differing_in_case_and_spacing_still_matches(self, heldout):
        question = question_text(_test_entries("multiple")[3]["question"])
        assert overlap({"query": "  " + question.upper().replace(" ", "  "), "tools": []}, heldout) == "query"

    def test_the_built_source_is_disjoint_from_the_test(self, heldout):
        examples, _, note = load_source(SOURCE)
        assert examples and all(overlap(e, heldout) is None for e in examples)
        # Some raw examples do overlap (exec_* reuse test functions): the check is not vacuous.
        raw, _ = bfcl_examples(["live_simple", "exec_simple", "exec_parallel_multiple"])
        dropped = len(raw) - len(examples)
        assert dropped > 0 and f"dropped {dropped} examples that overlap the BFCL test" in note


class TestDataBuildCommand:
    def test_builds_from_bfcl_and_says_what_it_dropped(self, tmp_path, capsys):
        out = tmp_path / "train.jsonl"
        assert main(["data", "build", "--input", SOURCE, "--output", str(out), "--max-examples", "40",
                     "--masking-ratio", "0.5", "--irrelevance-ratio", "0.1"]) == 0
        printed = capsys.readouterr().out
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(rows) == 44 and sum(r["irrelevant"] for r in rows) == 4
        assert "examples that overlap the BFCL test" in printed and "by query" in printed and "by function" in printed
        assert "live_simple" in printed  # what the source used, per category

    def test_same_seed_and_size_same_sources_for_both_arms(self, tmp_path):
        a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
        main(["data", "build", "--input", SOURCE, "--output", str(a), "--max-examples", "30",
              "--masking-ratio", "0", "--irrelevance-ratio", "0"])
        main(["data", "build", "--input", SOURCE, "--output", str(b), "--max-examples", "30"])
        ids = lambda path: sorted(json.loads(line)["id"] for line in path.read_text().splitlines()
                                  if not json.loads(line)["irrelevant"])
        assert ids(a) == ids(b) and len(ids(a)) == 30

    def test_a_test_category_as_input_exits_2(self, tmp_path, capsys):
        assert main(["data", "build", "--input", "bfcl-offline:irrelevance", "--output", str(tmp_path / "o")]) == 2
        assert "unknown BFCL training category 'irrelevance'" in capsys.readouterr().err
