"""Function masking at test time: does the model still call correctly when names mean nothing?

Every function name becomes 5–15 random characters and every (top-level) parameter name 4–10,
from the alphabet of the paper's training-time masking (``hammer.training.masking``); descriptions are
kept, and the possible answers are renamed to match. Each entry draws from its own generator
seeded with ``seed`` and the entry id, so a masked entry is the same whatever ``--limit`` or
order it runs with.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from hammer.evaluation.bfcl_tools import openai_name
from hammer.evaluation.entries import Entry
from hammer.training.masking import FUNCTION_NAME_LENGTH, PARAMETER_NAME_LENGTH, random_name


def _new_name(rng: random.Random, length: tuple[int, int], taken: set[str]) -> str:
    # Also reserve the underscore form so two masked names cannot meet after dots become underscores.
    name = random_name(rng, length, taken)
    while openai_name(name) in taken:
        name = random_name(rng, length, taken)
    taken.update({name, openai_name(name)})
    return name


def mask_entry(entry: Entry, seed: int) -> Entry:
    rng = random.Random(f"{seed}:{entry.id}")
    taken_functions: set[str] = set()
    function_names: dict[str, str] = {}
    parameter_names: dict[str, dict[str, str]] = {}
    functions = []
    for function in entry.functions:
        new_name = function_names.get(function["name"]) or _new_name(rng, FUNCTION_NAME_LENGTH, taken_functions)
        function_names[function["name"]] = new_name
        parameters = dict(function.get("parameters") or {})
        taken_params: set[str] = set()
        renames = {param: _new_name(rng, PARAMETER_NAME_LENGTH, taken_params)
                   for param in parameters.get("properties", {})}
        parameter_names[function["name"]] = renames
        parameters["properties"] = {renames[p]: spec for p, spec in parameters.get("properties", {}).items()}
        if "required" in parameters:
            parameters["required"] = [renames.get(p, p) for p in parameters["required"]]
        functions.append({**function, "name": new_name, "parameters": parameters})
    answers = [_rename_answer(answer, function_names, parameter_names) for answer in entry.answers]
    return dataclasses.replace(entry, functions=functions, answers=answers)


def _rename_answer(answer: dict[str, dict[str, Any]], function_names: dict[str, str],
                   parameter_names: dict[str, dict[str, str]]) -> dict[str, dict[str, Any]]:
    renamed = {}
    for name, arguments in answer.items():
        renames = parameter_names.get(name, {})
        renamed[function_names.get(name, name)] = {renames.get(p, p): v for p, v in arguments.items()}
    return renamed
