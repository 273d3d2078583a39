"""F1 on function names and on arguments, the paper's metric for API-Bank, ToolAlpaca, NexusRaven
and Seal-Tools.

Counts are micro-averaged over a data set: a function name counts as a true positive when it
is both predicted and expected (as multisets, so a name called twice must be expected twice);
an argument is a ``(function, parameter, value)`` triple, values compared after normalising
(strings stripped and lowercased, 2.0 equal to 2). An entry whose answer is no call adds only
false positives, for each call the model makes anyway.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Calls = list[dict[str, dict[str, Any]]]


def _normal(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip().lower()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    return value


def _names(calls: Calls) -> Counter[str]:
    return Counter(name for call in calls for name in call)


def _arguments(calls: Calls) -> Counter[tuple[str, str, str]]:
    return Counter((name, param, json.dumps(_normal(value), sort_keys=True))
                   for call in calls for name, arguments in call.items()
                   for param, value in (arguments if isinstance(arguments, dict) else {}).items())


def exact_match(predicted: Calls, expected: Calls) -> bool:
    return _names(predicted) == _names(expected) and _arguments(predicted) == _arguments(expected)


@dataclass
class F1Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, predicted: Counter, expected: Counter) -> None:
        overlap = sum((predicted & expected).values())
        self.tp += overlap
        self.fp += sum(predicted.values()) - overlap
        self.fn += sum(expected.values()) - overlap

    def f1(self) -> float:
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else 1.0


def f1_scores(pairs: Iterable[tuple[Calls, Calls]]) -> dict[str, float]:
    """``{"name_f1", "argument_f1"}`` over (predicted, expected) pairs."""
    names, arguments = F1Counts(), F1Counts()
    for predicted, expected in pairs:
        names.add(_names(predicted), _names(expected))
        arguments.add(_arguments(predicted), _arguments(expected))
    return {"name_f1": names.f1(), "argument_f1": arguments.f1()}
