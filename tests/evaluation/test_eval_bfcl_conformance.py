"""The ported AST checker gives bfcl-eval's own verdict on gold and mutated calls from real BFCL entries."""

from __future__ import annotations

import copy
import importlib
import random
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
from hammer.evaluation.ast_checker import ast_checker
from hammer.evaluation.bfcl_data import load_category

from tests.evaluation.eval_helpers import gold_calls

pytest.importorskip("bfcl_eval")


@pytest.fixture(scope="module")
def bfcl_checker() -> Iterator[Any]:
    """bfcl-eval's ``ast_checker``; its model registry (which imports every vendor SDK) is stubbed out."""
    stub = types.ModuleType("bfcl_eval.constants.model_config")
    stub.MODEL_CONFIG_MAPPING = type("Mapping", (dict,), {
        "__missing__": lambda self, key: types.SimpleNamespace(underscore_to_dot=False)})()
    saved = {name: sys.modules.get(name) for name in (stub.__name__, "bfcl_eval.eval_checker.ast_eval.ast_checker")}
    sys.modules[stub.__name__] = stub
    sys.modules.pop("bfcl_eval.eval_checker.ast_eval.ast_checker", None)
    try:
        module = importlib.import_module("bfcl_eval.eval_checker.ast_eval.ast_checker")
        language = importlib.import_module("bfcl_eval.constants.enums").Language.PYTHON
    except ImportError as exc:
        pytest.skip(f"bfcl-eval's checker does not import here: {exc}")
    yield lambda functions, calls, answers, category: module.ast_checker(
        functions, calls, answers, language, category, "model")["valid"]
    for name, module in saved.items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module


def mutations(calls: list[dict[str, dict[str, Any]]], rng: random.Random) -> Iterator[list]:
    yield calls
    for kind in ("drop", "value", "string", "int", "extra", "reverse"):
        mutated = copy.deepcopy(calls)
        name = next(iter(mutated[0]))
        arguments = mutated[0][name]
        param = rng.choice(sorted(arguments)) if arguments else None
        if kind == "drop" and param:
            del arguments[param]
        elif kind == "value" and param:
            arguments[param] = "zzz"
        elif kind == "string" and param:
            arguments[param] = str(arguments[param])
        elif kind == "int" and param:
            arguments[param] = 7
        elif kind == "extra":
            arguments["extra_param"] = 1
        elif kind == "reverse":
            mutated.reverse()
        yield mutated


@pytest.mark.parametrize("category", ["simple_python", "multiple", "parallel", "parallel_multiple",
                                      "live_simple", "live_multiple"])
def test_same_verdicts_as_bfcl(bfcl_checker, category):
    rng = random.Random(0)
    checked = 0
    for entry in load_category(category, limit=60):
        if any(p.get("type") == "any" for f in entry.functions for p in f["parameters"]["properties"].values()):
            continue  # deliberate difference: "any" accepts every JSON type here
        for calls in mutations(gold_calls(entry), rng):
            expected = bfcl_checker(copy.deepcopy(entry.functions), copy.deepcopy(calls), entry.answers, category)
            assert ast_checker(entry.functions, calls, entry.answers, category).valid == expected, (entry.id, calls)
            checked += 1
    assert checked > 200
