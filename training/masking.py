"""Function masking (Hammer, ICLR 2025): random names so the model reads descriptions.

Mirrors the released data_processing.py: function names become 5–15 random characters and
parameter names 4–10, drawn from ``A–Z a–z _ . 0–9`` and renamed consistently in tools and
answers; descriptions stay. Where a default equals the answer's value it is perturbed
(int +1..4, float +U[0,1), str 5 random characters) in the tool, its description, the
answer and the query, so copying defaults stops being a shortcut. Candidates are
de-duplicated by name and shuffled. Deviations, both fixes: bool and container defaults are
left alone (the released code turns ``True`` into a float and crashes on dicts), and values
are replaced in text only as whole tokens (so default ``1`` does not rewrite ``2021``).
"""

from __future__ import annotations

import copy
import random
import re
import string
from collections.abc import Collection
from typing import Any

from hammer.training.xlam import Example

ALPHABET = string.ascii_uppercase + string.ascii_lowercase + "_." + string.digits
FUNCTION_NAME_LENGTH = (5, 15)
PARAMETER_NAME_LENGTH = (4, 10)
PERTURBED_STRING_LENGTH = 5


def random_name(rng: random.Random, length: tuple[int, int], taken: Collection[str] = ()) -> str:
    """A random name from ``ALPHABET`` with a length in ``length`` (inclusive), not in ``taken``.

    >>> name = random_name(random.Random(0), (5, 15))
    >>> 5 <= len(name) <= 15 and set(name) <= set(ALPHABET)
    True
    """
    while True:
        name = "".join(rng.choices(ALPHABET, k=rng.randint(*length)))
        if name not in taken:
            return name


def dedupe_tools(example: Example) -> Example:
    """Candidates de-duplicated by name, first occurrence kept.

    >>> dedupe_tools({"tools": [{"name": "f"}, {"name": "g"}, {"name": "f"}], "answers": []})["tools"]
    [{'name': 'f'}, {'name': 'g'}]
    """
    seen: set[str] = set()
    tools = [t for t in example["tools"] if not (t["name"] in seen or seen.add(t["name"]))]
    return {**example, "tools": tools}


def mask_function_names(example: Example, rng: random.Random) -> Example:
    """Every function renamed to a random 5–15 character name, in tools and answers alike.

    >>> ex = mask_function_names({"query": "q", "tools": [{"name": "get_weather"}],
    ...     "answers": [{"name": "get_weather", "arguments": {}}]}, random.Random(1))
    >>> ex["tools"][0]["name"] == ex["answers"][0]["name"] != "get_weather"
    True
    """
    example = copy.deepcopy(example)
    renames: dict[str, str] = {}
    for tool in example["tools"]:
        if tool["name"] not in renames:
            renames[tool["name"]] = random_name(rng, FUNCTION_NAME_LENGTH, set(renames.values()))
        tool["name"] = renames[tool["name"]]
    for call in example["answers"]:
        call["name"] = renames.get(call["name"], call["name"])
    return example


def mask_parameter_names(example: Example, rng: random.Random) -> Example:
    """Every parameter renamed to a random 4–10 character name, in its tool and in the
    answers that call that tool. Expects de-duplicated tools (one renaming per function).

    >>> ex = mask_parameter_names({"query": "q", "tools": [{"name": "f", "parameters": {"city": {}}}],
    ...     "answers": [{"name": "f", "arguments": {"city": "Paris"}}]}, random.Random(1))
    >>> list(ex["tools"][0]["parameters"]) == list(ex["answers"][0]["arguments"]) != ["city"]
    True
    """
    example = copy.deepcopy(example)
    for tool in example["tools"]:
        renames: dict[str, str] = {}
        for old in tool.get("parameters") or {}:
            renames[old] = random_name(rng, PARAMETER_NAME_LENGTH, set(renames.values()))
        tool["parameters"] = {renames[k]: v for k, v in (tool.get("parameters") or {}).items()}
        for call in example["answers"]:
            if call["name"] == tool["name"]:
                call["arguments"] = {renames.get(k, k): v for k, v in call["arguments"].items()}
    return example


def perturbed_value(value: float | str, rng: random.Random) -> int | float | str:
    """A different value of the same kind: int +1..4, float +U[0,1), str 5 random characters.

    >>> rng = random.Random(0)
    >>> 1 <= perturbed_value(10, rng) - 10 <= 4, len(perturbed_value("celsius", rng))
    (True, 5)
    """
    if isinstance(value, int):
        return value + rng.randint(1, 4)
    if isinstance(value, float):
        return value + rng.random()
    return "".join(rng.choice(ALPHABET) for _ in range(PERTURBED_STRING_LENGTH))


def perturb_defaults(example: Example, rng: random.Random) -> Example:
    """Defaults that equal the answer's value replaced by a perturbed value everywhere they show.

    >>> ex = perturb_defaults({"query": "Top 10 news", "tools": [{"name": "f", "parameters": {
    ...     "n": {"type": "int", "description": "count, e.g. 10", "default": 10}}}],
    ...     "answers": [{"name": "f", "arguments": {"n": 10}}]}, random.Random(0))
    >>> new = ex["answers"][0]["arguments"]["n"]
    >>> new != 10, ex["tools"][0]["parameters"]["n"]["default"] == new, ex["query"] == f"Top {new} news"
    (True, True, True)
    """
    example = copy.deepcopy(example)
    for tool in example["tools"]:
        calls = [c for c in example["answers"] if c["name"] == tool["name"]]
        for param, spec in (tool.get("parameters") or {}).items():
            default = spec.get("default") if isinstance(spec, dict) else None
            if not _perturbable(default) or not any(
                    param in c["arguments"] and str(c["arguments"][param]) == str(default) for c in calls):
                continue
            new = perturbed_value(default, rng)
            spec["default"] = new
            if isinstance(spec.get("description"), str):
                spec["description"] = replace_value(spec["description"], default, new)
            for call in calls:
                value = call["arguments"].get(param)
                if param in call["arguments"] and not isinstance(value, bool) and value == default:
                    call["arguments"][param] = new
                    example["query"] = replace_value(example["query"], default, new)
    return example


def replace_value(text: str, old: Any, new: Any) -> str:
    """``old`` replaced by ``new`` where it stands as a whole token, matching its case variants.

    >>> replace_value("Use CELSIUS or Celsius, not celsiusX", "celsius", "abcde")
    'Use ABCDE or Abcde, not celsiusX'
    """
    old, new = str(old), str(new)
    for variant_old, variant_new in ((old, new), (old.capitalize(), new.capitalize()),
                                     (old.lower(), new.lower()), (old.upper(), new.upper())):
        pattern = rf"(?<![\w.]){re.escape(variant_old)}(?![\w]|\.\d)"
        text = re.sub(pattern, variant_new.replace("\\", "\\\\"), text)
    return text


def mask_functions(example: Example, rng: random.Random) -> Example:
    """The full masking transform: de-duplicate, rename functions and parameters, perturb
    defaults, shuffle the candidates; marks the example ``masked``."""
    example = dedupe_tools(example)
    example = mask_function_names(example, rng)
    example = mask_parameter_names(example, rng)
    example = perturb_defaults(example, rng)
    rng.shuffle(example["tools"])
    return {**example, "masked": True}


def _perturbable(value: Any) -> bool:
    return isinstance(value, (int, float, str)) and not isinstance(value, bool) and value != ""
