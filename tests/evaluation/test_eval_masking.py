"""Masked entries: random names, kept descriptions, answers renamed to match, deterministic per seed."""

from __future__ import annotations

import pytest
from hammer.evaluation.bfcl_data import load_category
from hammer.evaluation.bfcl_tools import openai_name
from hammer.evaluation.entries import Entry
from hammer.evaluation.masking import mask_entry
from hammer.evaluation.runner import request_for
from hammer.evaluation.scoring import score
from hammer.training.masking import ALPHABET

from tests.evaluation.eval_helpers import gold_reply

pytest.importorskip("bfcl_eval")


@pytest.fixture(scope="module")
def entries() -> list[Entry]:
    return [e for c in ("simple_python", "multiple", "parallel", "parallel_multiple", "live_simple")
            for e in load_category(c, limit=40)]


def test_gold_answers_pass_the_same_way_masked_and_unmasked(entries):
    for e in entries:
        plain = score(*request_for(e, False, 0), gold_reply(e)).passed
        sent, tools, names = request_for(e, True, 0)
        masked = score(sent, tools, names, gold_reply(sent)).passed
        assert masked == plain, e.id
    # and the gold answers do pass nearly everywhere (a few BFCL answers contradict their own schema)
    passed = sum(score(*request_for(e, True, 0), gold_reply(request_for(e, True, 0)[0])).passed for e in entries)
    assert passed >= 0.97 * len(entries)


def test_names_are_random_descriptions_kept_and_nothing_left_unrenamed(entries):
    for e in entries:
        m = mask_entry(e, seed=0)
        old_names = {f["name"] for f in e.functions}
        for before, after in zip(e.functions, m.functions):
            assert after["description"] == before["description"]
            assert 5 <= len(after["name"]) <= 15 and set(after["name"]) <= set(ALPHABET)
            assert after["name"] not in old_names
            old_params = before["parameters"]["properties"]
            new_params = after["parameters"]["properties"]
            assert list(new_params.values()) == list(old_params.values())  # specs, descriptions included
            assert all(4 <= len(p) <= 10 for p in new_params) and not set(new_params) & set(old_params)
            assert set(after["parameters"].get("required", [])) <= set(new_params)
        masked_names = {f["name"] for f in m.functions}
        for answer, original in zip(m.answers, e.answers):
            for (name, params), (old_name, old_params) in zip(answer.items(), original.items()):
                function = next(f for f in m.functions if f["name"] == name)
                assert name in masked_names
                # every parameter is renamed, except the few BFCL answers list without a schema entry
                unknown = set(params) - set(function["parameters"]["properties"])
                assert unknown == set(old_params) - set(next(f for f in e.functions if f["name"] == old_name)
                                                        ["parameters"]["properties"])


def test_masking_is_deterministic_for_a_seed_and_independent_of_the_sample(entries):
    e = entries[3]
    assert mask_entry(e, 7) == mask_entry(e, 7)
    assert mask_entry(e, 7).functions != mask_entry(e, 8).functions
    same_entry_in_another_sample = next(x for x in load_category(e.category) if x.id == e.id)
    assert mask_entry(same_entry_in_another_sample, 7) == mask_entry(e, 7)


def test_masked_underscore_names_never_collide():
    functions = [{"name": f"f{i}", "description": "", "parameters": {"type": "dict", "properties": {}}}
                 for i in range(50)]
    e = Entry("x", "multiple", [], functions, [], "ast")
    for seed in range(20):
        names = [openai_name(f["name"]) for f in mask_entry(e, seed).functions]
        assert len(set(names)) == len(names)
