from __future__ import annotations

import copy
import random

import pytest
from hammer.training.masking import (
    ALPHABET,
    dedupe_tools,
    mask_function_names,
    mask_functions,
    mask_parameter_names,
    perturb_defaults,
    replace_value,
)

from tests.training.training_helpers import assert_answers_valid


def _names(example):
    return [t["name"] for t in example["tools"]]


class TestMaskFunctionNames:
    def test_names_are_random_from_the_alphabet_and_consistent_in_answers(self, sample):
        rng = random.Random(0)
        for example in sample:
            masked = mask_function_names(example, rng)
            renamed = dict(zip(_names(example), _names(masked)))
            for name in _names(masked):
                assert 5 <= len(name) <= 15 and set(name) <= set(ALPHABET)
            assert not set(_names(example)) & set(_names(masked))
            assert [c["name"] for c in masked["answers"]] == [renamed[c["name"]] for c in example["answers"]]
            assert [t["description"] for t in masked["tools"]] == [t["description"] for t in example["tools"]]

    def test_distinct_functions_get_distinct_names(self, synthetic):
        rng = random.Random(1)
        for example in synthetic[:500]:
            assert len(set(_names(mask_function_names(example, rng)))) == len(set(_names(example)))


class TestMaskParameterNames:
    def test_parameters_renamed_consistently_and_answers_still_validate(self, sample, synthetic):
        rng = random.Random(0)
        for example in [*sample, *synthetic[:500]]:
            masked = mask_parameter_names(dedupe_tools(example), rng)
            for old, new in zip(example["tools"], masked["tools"]):
                assert [p["description"] for p in old["parameters"].values()] == \
                       [p["description"] for p in new["parameters"].values()]
                for name in new["parameters"]:
                    assert 4 <= len(name) <= 10 and set(name) <= set(ALPHABET)
            assert_answers_valid(masked)
            assert [list(c["arguments"].values()) for c in masked["answers"]] == \
                   [list(c["arguments"].values()) for c in example["answers"]]


class TestPerturbDefaults:
    def test_default_equal_to_answer_changes_everywhere(self, sample):
        example = next(e for e in sample if e["query"].startswith("Schedule a 60 minute"))
        result = perturb_defaults(example, random.Random(0))
        new = result["answers"][0]["arguments"]["duration_minutes"]
        assert isinstance(new, int) and 61 <= new <= 64
        assert result["tools"][0]["parameters"]["duration_minutes"]["default"] == new
        assert f"a {new} minute team sync" in result["query"]

    def test_string_and_float_defaults(self, sample):
        rng = random.Random(3)
        weather = perturb_defaults(next(e for e in sample if "Oslo in celsius" in e["query"]), rng)
        units = weather["answers"][0]["arguments"]["units"]
        assert len(units) == 5 and units != "celsius" and f"in {units}" in weather["query"]
        food = perturb_defaults(next(e for e in sample if "100.0 grams" in e["query"]), rng)
        grams = food["answers"][0]["arguments"]["serving_grams"]
        assert isinstance(grams, float) and 100.0 < grams < 101.0 and f"{grams} grams" in food["query"]

    def test_defaults_that_differ_from_the_answer_stay(self, sample):
        example = next(e for e in sample if e["query"].startswith("Book a 30-minute call"))
        assert perturb_defaults(example, random.Random(0)) == example

    def test_booleans_are_left_alone(self, sample):
        example = next(e for e in sample if e["query"].startswith("Sort 10, 2"))
        assert perturb_defaults(example, random.Random(0)) == example

    def test_perturbed_answers_still_validate(self, synthetic):
        rng = random.Random(5)
        changed = 0
        for example in synthetic[:1000]:
            result = perturb_defaults(example, rng)
            assert_answers_valid(result)
            changed += result != example
        assert changed > 100

    def test_whole_token_replacement(self):
        assert replace_value("year 2021, top 1", 1, 3) == "year 2021, top 3"


class TestMaskFunctions:
    def test_full_masking_keeps_every_answer_valid(self, sample, synthetic):
        rng = random.Random(0)
        for example in [*sample, *synthetic[:1000]]:
            masked = mask_functions(example, rng)
            assert masked["masked"]
            assert_answers_valid(masked)
            assert len(masked["answers"]) == len(example["answers"])

    def test_candidates_are_deduplicated_and_shuffled(self, sample):
        example = copy.deepcopy(sample[0])
        example["tools"].append(copy.deepcopy(example["tools"][0]))
        descriptions = [mask_functions(example, random.Random(s))["tools"] for s in range(20)]
        assert all(len(tools) == len(sample[0]["tools"]) for tools in descriptions)
        assert len({tuple(t["description"] for t in tools) for tools in descriptions}) > 1

    def test_same_seed_same_result(self, sample):
        assert [mask_functions(e, random.Random(9)) for e in sample] == \
               [mask_functions(e, random.Random(9)) for e in sample]

    @pytest.mark.parametrize("field", ["tools", "answers", "query"])
    def test_source_is_not_modified(self, sample, field):
        before = copy.deepcopy([e[field] for e in sample])
        [mask_functions(e, random.Random(0)) for e in sample]
        assert [e[field] for e in sample] == before
