"""Our side of BFCL scoring gives bfcl-eval's own results: the tools we send, and verdicts through our shim.

BFCL's OpenAI function-calling handler sends ``convert_to_tool``'s tools, gets underscored names
back, and lets its checker rewrite the expected names to match (``underscore_to_dot``). We map the
names back instead and call the checker through ``hammer.evaluation.bfcl_checker``; both routes
must give the same verdict on gold and mutated calls of real entries.
"""

from __future__ import annotations

import copy
import importlib
import random
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hammer.evaluation import bfcl_checker
from hammer.evaluation.bfcl_data import CATEGORY_SCORING, load_category
from hammer.evaluation.bfcl_tools import openai_name, to_openai_tools

from tests.evaluation.eval_helpers import gold_calls

pytest.importorskip("bfcl_eval")

AST_CATEGORIES = [c for c, scoring in CATEGORY_SCORING.items() if scoring == "ast"]


@pytest.fixture(scope="module")
def bfcl_modules(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, types.ModuleType]]:
    """bfcl-eval's checker as its OpenAI handler runs it (``underscore_to_dot=True``) and its
    ``model_handler.utils``; only the model registry and the Java/JavaScript parsers are stood in for."""
    model_config = types.ModuleType("bfcl_eval.constants.model_config")
    model_config.MODEL_CONFIG_MAPPING = type("Mapping", (dict,), {
        "__missing__": lambda self, key: types.SimpleNamespace(underscore_to_dot=True)})()
    parsers = {f"bfcl_eval.model_handler.parser.{name}": types.SimpleNamespace(**{function: None})
               for name, function in (("java_parser", "parse_java_function_call"),
                                      ("js_parser", "parse_javascript_function_call"))}
    wanted = ("bfcl_eval.eval_checker.ast_eval.ast_checker", "bfcl_eval.model_handler.utils")
    with bfcl_checker.modules_replaced({model_config.__name__: model_config, **parsers, **dict.fromkeys(wanted)}):
        # bfcl_eval.constants.eval_config creates result folders under BFCL_PROJECT_ROOT when imported.
        with pytest.MonkeyPatch.context() as env:
            env.setenv("BFCL_PROJECT_ROOT", str(tmp_path_factory.mktemp("bfcl_project")))
            modules = {name.rsplit(".", 1)[1]: importlib.import_module(name) for name in wanted}
        yield modules


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


def test_the_shim_runs_bfcls_own_checker_and_leaves_no_stand_in_behind():
    checker, _ = bfcl_checker._bfcl()
    package = Path(importlib.util.find_spec("bfcl_eval").origin).parent
    assert Path(checker.__file__).is_relative_to(package)
    assert checker.__name__ not in sys.modules or sys.modules[checker.__name__] is not checker
    registry = sys.modules.get("bfcl_eval.constants.model_config")
    assert registry is None or not hasattr(registry.MODEL_CONFIG_MAPPING, "__missing__")
    assert importlib.metadata.version("bfcl-eval") == bfcl_checker.BFCL_VERSION


@pytest.mark.parametrize("category", AST_CATEGORIES)
def test_same_verdicts_as_bfcls_openai_route(bfcl_modules, category):
    rng = random.Random(0)
    checker = bfcl_modules["ast_checker"]
    python = importlib.import_module("bfcl_eval.constants.enums").Language.PYTHON
    entries = load_category(category, limit=60)
    verdicts = {True: 0, False: 0}
    for entry in entries:
        for calls in mutations(gold_calls(entry), rng):
            # BFCL's route: the model answers with underscored names, the checker rewrites the expected ones.
            sent = [{openai_name(name): args for name, args in call.items()} for call in calls]
            expected = checker.ast_checker(copy.deepcopy(entry.functions), copy.deepcopy(sent),
                                           copy.deepcopy(entry.answers), python, category, "any-openai-model")
            ours = bfcl_checker.check(entry.functions, calls, entry.answers, category)
            assert ours["valid"] == expected["valid"], (entry.id, calls, expected)
            verdicts[ours["valid"]] += 1
    # both verdicts occur: gold calls pass and most mutations fail
    assert verdicts[True] >= 0.9 * len(entries) and verdicts[False] >= 3 * len(entries), verdicts


@pytest.mark.parametrize("category", list(CATEGORY_SCORING))
def test_tools_equal_bfcls_convert_to_tool(bfcl_modules, category):
    utils = bfcl_modules["utils"]
    style = importlib.import_module("bfcl_eval.constants.enums").ModelStyle.OPENAI_COMPLETIONS
    types_table = importlib.import_module("bfcl_eval.constants.type_mappings").GORILLA_TO_OPENAPI
    entries = load_category(category)
    for entry in entries:
        tools, _ = to_openai_tools(entry.functions)
        assert tools == utils.convert_to_tool(copy.deepcopy(entry.functions), types_table, style), entry.id
    assert entries  # the loop compared something
