from __future__ import annotations

import json

import pytest
from hammer.training.build import build, build_examples, build_rows
from hammer.training.irrelevance import answer_names
from hammer.training.xlam import load_xlam

from hammer.prompt_format import parse_calls
from tests.training.conftest import SAMPLE
from tests.training.training_helpers import assert_answers_valid


class TestBuildExamples:
    @pytest.mark.parametrize("masking, irrelevance", [(0.33, 0.10), (0.67, 0.0), (0.0, 0.2), (1.0, 0.1)])
    def test_ratios_land_on_the_parameters(self, synthetic, masking, irrelevance):
        built = build_examples(synthetic, masking, irrelevance, seed=0)
        n = len(built)
        assert abs(sum(bool(e.get("irrelevant")) for e in built) / n - irrelevance) < 0.002
        assert abs(sum(bool(e.get("masked")) for e in built) / n - masking) < 0.002

    def test_irrelevance_and_masking_compose(self, synthetic):
        by_id = {e["id"]: e for e in synthetic}
        built = build_examples(synthetic, 0.5, 0.1, seed=1)
        both = [e for e in built if e.get("irrelevant") and e.get("masked")]
        assert both, "masking applies to irrelevance examples too"
        for example in built:
            if example.get("irrelevant"):
                assert example["answers"] == []
                if not example.get("masked"):
                    assert not answer_names(by_id[example["id"]]) & {t["name"] for t in example["tools"]}
            else:
                assert_answers_valid(example)

    def test_rows_are_shuffled(self, synthetic):
        ids = [e["id"] for e in build_examples(synthetic, 0.3, 0.1, seed=0)]
        assert ids[: len(synthetic)] != sorted(ids[: len(synthetic)])

    def test_bad_ratios_are_rejected(self, sample):
        with pytest.raises(ValueError):
            build_examples(sample, 1.5, 0.1)
        with pytest.raises(ValueError):
            build_examples(sample, 0.3, 1.0)


class TestBuildRows:
    def test_same_seed_same_output_other_seed_other_output(self, synthetic):
        first, _ = build_rows(synthetic[:500], seed=4)
        again, _ = build_rows(synthetic[:500], seed=4)
        other, _ = build_rows(synthetic[:500], seed=5)
        assert first == again and first != other

    def test_report_counts_match_the_rows(self, sample):
        rows, report = build_rows(sample, 0.33, 0.1, seed=0)
        assert report.source_examples == len(sample) and report.total == len(rows)
        assert report.irrelevant == sum(r["irrelevant"] for r in rows) == len(rows) - len(sample)
        assert report.masked == round(0.33 * len(rows))
        assert "irrelevance share" in str(report)

    def test_every_completion_parses_and_irrelevance_is_empty(self, sample):
        rows, _ = build_rows(sample, 0.5, 0.2, seed=0)
        for row in rows:
            calls = parse_calls(row["completion"])
            assert (calls == []) == row["irrelevant"]


class TestBuildFile:
    def test_writes_prompt_completion_jsonl(self, tmp_path):
        out = tmp_path / "sub" / "train.jsonl"
        report = build(SAMPLE, out, seed=0)
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(rows) == report.total
        assert all(isinstance(r["prompt"], str) and isinstance(r["completion"], str) for r in rows)
        assert build_rows(load_xlam(SAMPLE), seed=0)[0] == rows
