from __future__ import annotations

import random

import pytest
from hammer.training.irrelevance import add_irrelevance, answer_names, is_eligible, make_irrelevant


class TestMakeIrrelevant:
    def test_answer_functions_are_gone_and_label_is_empty(self, sample):
        for example in filter(is_eligible, sample):
            result = make_irrelevant(example)
            assert result["answers"] == [] and result["irrelevant"]
            assert not answer_names(example) & {t["name"] for t in result["tools"]}
            assert result["tools"], "an irrelevance example keeps at least one candidate"
            assert result["query"] == example["query"]

    def test_source_is_not_modified(self, sample):
        before = [dict(e, tools=list(e["tools"])) for e in sample]
        [make_irrelevant(e) for e in filter(is_eligible, sample)]
        assert sample == before


class TestAddIrrelevance:
    @pytest.mark.parametrize("ratio", [0.05, 0.10, 0.25])
    def test_final_share_is_the_ratio(self, synthetic, ratio):
        result = add_irrelevance(synthetic, ratio, random.Random(0))
        share = sum(bool(e.get("irrelevant")) for e in result) / len(result)
        assert abs(share - ratio) < 0.002
        assert result[: len(synthetic)] == synthetic

    def test_irrelevance_rows_never_contain_their_answer_function(self, synthetic):
        by_id = {e["id"]: e for e in synthetic}
        added = [e for e in add_irrelevance(synthetic, 0.1, random.Random(1)) if e.get("irrelevant")]
        assert added
        for example in added:
            assert not answer_names(by_id[example["id"]]) & {t["name"] for t in example["tools"]}

    def test_sources_are_distinct_while_enough_are_eligible(self, synthetic):
        added = [e for e in add_irrelevance(synthetic, 0.1, random.Random(2)) if e.get("irrelevant")]
        assert len({e["id"] for e in added}) == len(added)

    def test_zero_ratio_adds_nothing(self, sample):
        assert add_irrelevance(sample, 0.0, random.Random(0)) == sample

    def test_impossible_without_spare_tools(self):
        only = [{"query": "q", "tools": [{"name": "f"}], "answers": [{"name": "f", "arguments": {}}]}] * 10
        with pytest.raises(ValueError, match="irrelevance"):
            add_irrelevance(only, 0.1, random.Random(0))
