"""Irrelevance augmentation: examples whose fitting tools were taken away, labelled ``[]``.

They teach the model to refuse when no candidate fits (the paper's best share is about 10%).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence

from hammer.training.xlam import Example


def answer_names(example: Example) -> set[str]:
    """Names of the functions the ground-truth answer calls."""
    return {call["name"] for call in example["answers"]}


def is_eligible(example: Example) -> bool:
    """True when removing the answer's functions still leaves at least one candidate tool.

    >>> is_eligible({"tools": [{"name": "f"}, {"name": "g"}], "answers": [{"name": "f"}]})
    True
    >>> is_eligible({"tools": [{"name": "f"}], "answers": [{"name": "f"}]})
    False
    """
    if not example["answers"]:
        return False
    names = answer_names(example)
    return any(tool["name"] not in names for tool in example["tools"])


def make_irrelevant(example: Example) -> Example:
    """The example without its ground-truth function(s) among the candidates, answer ``[]``.

    >>> make_irrelevant({"query": "q", "tools": [{"name": "f"}, {"name": "g"}],
    ...                  "answers": [{"name": "f", "arguments": {}}]})
    {'query': 'q', 'tools': [{'name': 'g'}], 'answers': [], 'irrelevant': True}
    """
    names = answer_names(example)
    result = copy.deepcopy(example)
    result["tools"] = [tool for tool in result["tools"] if tool["name"] not in names]
    result["answers"] = []
    result["irrelevant"] = True
    return result


def irrelevant_count(n_examples: int, ratio: float) -> int:
    """How many irrelevance examples to add so they make up ``ratio`` of the result.

    >>> irrelevant_count(60000, 0.1)
    6667
    >>> irrelevant_count(100, 0.0)
    0
    """
    if not 0 <= ratio < 1:
        raise ValueError(f"irrelevance ratio must be in [0, 1), got {ratio}")
    return round(n_examples * ratio / (1 - ratio))


def add_irrelevance(examples: Sequence[Example], ratio: float, rng: random.Random) -> list[Example]:
    """``examples`` plus irrelevance copies of randomly picked eligible ones (appended).

    Sources are drawn without replacement while there are enough eligible examples, so
    one instance rarely appears twice as a refusal.
    """
    wanted = irrelevant_count(len(examples), ratio)
    eligible = [e for e in examples if is_eligible(e)]
    if wanted and not eligible:
        raise ValueError("no example has a tool besides its answer's functions: cannot make irrelevance examples")
    picks: list[Example] = []
    while len(picks) < wanted:
        picks += rng.sample(eligible, min(wanted - len(picks), len(eligible)))
    return [*examples, *(make_irrelevant(e) for e in picks)]
