from __future__ import annotations

import json

import pytest

from tests.training.conftest import SAMPLE
from training.xlam import load_xlam


class TestLoadXlam:
    def test_sample_set_parses_into_tools_and_answers(self, sample):
        assert len(sample) >= 40
        assert all(isinstance(e["tools"], list) and isinstance(e["answers"], list) for e in sample)
        assert any(len(e["answers"]) > 1 for e in sample), "sample needs parallel calls"
        assert any("default" in p for e in sample for t in e["tools"] for p in t["parameters"].values())

    def test_jsonl_gives_the_same_examples_as_json(self, tmp_path, sample):
        rows = json.loads(SAMPLE.read_text())
        path = tmp_path / "x.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        assert load_xlam(path) == sample

    def test_missing_file_is_an_error_not_a_hub_lookup(self, tmp_path):
        with pytest.raises(FileNotFoundError):
            load_xlam(tmp_path / "nope.json")

    def test_row_without_query_is_rejected(self, tmp_path):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps([{"tools": "[]", "answers": "[]"}]))
        with pytest.raises(TypeError, match="query"):
            load_xlam(path)
