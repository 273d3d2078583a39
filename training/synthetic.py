"""Synthetic xLAM-shaped examples for throughput benchmarks and statistical tests.

Shaped like the 60k set (2–5 candidate tools, 1–4 parameters each, defaults that the answer
sometimes repeats, one or two calls), with values that validate against their tools' schemas.
"""

from __future__ import annotations

import json
import random
from typing import Any

from hammer.training.xlam import Example

_WORDS = ("weather", "city", "price", "stock", "news", "search", "user", "order", "flight", "hotel", "movie",
          "recipe", "email", "event", "convert", "amount", "date", "time", "number", "list", "query", "limit",
          "language", "unit", "country", "currency")
_TYPES = ("str", "int", "float", "bool", "List[str]", "str, optional", "int, optional")


def synthetic_examples(n: int, seed: int = 0, as_json_strings: bool = False) -> list[Example]:
    """``n`` examples; with ``as_json_strings`` the tools and answers are JSON strings, as on disk.

    >>> ex = synthetic_examples(1)[0]
    >>> {c["name"] for c in ex["answers"]} <= {t["name"] for t in ex["tools"]}
    True
    """
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        tools = [_tool(rng, k) for k in range(rng.randint(2, 5))]
        answers = [_call(rng, tool) for tool in rng.sample(tools, rng.randint(1, min(2, len(tools))))]
        values = " and ".join(str(v) for call in answers for v in call["arguments"].values())
        example: Example = {"id": i, "query": f"Please {rng.choice(_WORDS)} with {values}.", "tools": tools,
                            "answers": answers}
        if as_json_strings:
            example = {**example, "tools": json.dumps(tools), "answers": json.dumps(answers)}
        examples.append(example)
    return examples


def _tool(rng: random.Random, k: int) -> dict[str, Any]:
    params = {}
    for _ in range(rng.randint(1, 4)):
        type_name = rng.choice(_TYPES)
        spec: dict[str, Any] = {"description": f"The {rng.choice(_WORDS)} to use.", "type": type_name}
        if rng.random() < 0.4:
            spec["default"] = _value(rng, type_name)
            spec["description"] += f" Default {spec['default']}."
        params[f"{rng.choice(_WORDS)}_{len(params)}"] = spec
    return {"name": f"{rng.choice(_WORDS)}_{rng.choice(_WORDS)}_{k}", "description": "Does something useful.",
            "parameters": params}


def _call(rng: random.Random, tool: dict[str, Any]) -> dict[str, Any]:
    arguments = {}
    for name, spec in tool["parameters"].items():
        if "default" in spec and rng.random() < 0.5:
            arguments[name] = spec["default"]  # the case default perturbation exists for
        elif "default" not in spec or rng.random() < 0.5:
            arguments[name] = _value(rng, spec["type"])
    return {"name": tool["name"], "arguments": arguments}


def _value(rng: random.Random, type_name: str) -> Any:
    base = type_name.split(",")[0]
    if base == "int":
        return rng.randint(0, 100)
    if base == "float":
        return round(rng.uniform(0, 100), 2)
    if base == "bool":
        return rng.random() < 0.5
    if base == "List[str]":
        return [rng.choice(_WORDS) for _ in range(rng.randint(1, 3))]
    return rng.choice(_WORDS) + str(rng.randint(1, 99))
