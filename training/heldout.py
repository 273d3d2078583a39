"""Keeping BFCL's test out of training: drop rows whose query or functions appear in the test.

The test is what BFCL scores and this project reports: ``simple_python``, ``multiple``,
``parallel``, ``parallel_multiple``, ``irrelevance``, and ``simple_java`` / ``simple_javascript``
(out of domain). A training example overlaps it when its query equals a test question (case and
spacing aside) or when any of its tools is a test function (same name once dots become
underscores, same parameter names): a stricter rule than equal function sets, so a function
seen at test time was never seen in training, whatever it was paired with.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hammer.evaluation.bfcl_data import _data_file, data_dir
from hammer.training.bfcl_source import function_key
from hammer.training.xlam import Example

TEST_CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance",
                   "simple_java", "simple_javascript")


@dataclass(frozen=True)
class HeldOut:
    """The test's normalized queries and its function keys (``bfcl_source.function_key``)."""

    queries: frozenset[str]
    functions: frozenset[tuple[str, tuple[str, ...]]]


def query_key(text: str) -> str:
    """A query compared without case and spacing differences.

    >>> query_key("  Find the AREA\\n of a circle ")
    'find the area of a circle'
    """
    return " ".join(text.lower().split())


def question_text(question: Sequence[Any]) -> str:
    """The user messages of a BFCL question's first turn, joined.

    >>> question_text([[{"role": "user", "content": "Hi"}]])
    'Hi'
    """
    turn = question[0] if question and isinstance(question[0], list) else question
    return "\n".join(m.get("content", "") for m in turn if isinstance(m, Mapping) and m.get("role") == "user")


def load_test_set(categories: Iterable[str] = TEST_CATEGORIES, directory: Path | None = None) -> HeldOut:
    """Queries and functions of the test categories, read from the installed ``bfcl-eval``."""
    directory = directory or data_dir()
    queries: set[str] = set()
    functions: set[tuple[str, tuple[str, ...]]] = set()
    for category in categories:
        with _data_file(directory, category).open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    entry = json.loads(line)
                    queries.add(query_key(question_text(entry["question"])))
                    functions.update(function_key(function) for function in entry["function"])
    return HeldOut(frozenset(queries), frozenset(functions))


def overlap(example: Example, heldout: HeldOut) -> str | None:
    """``"query"`` or ``"function"`` when ``example`` meets the test that way, else ``None``.

    >>> held = HeldOut(frozenset({"hi there"}), frozenset({("f", ("x",))}))
    >>> overlap({"query": "Hi  there", "tools": []}, held)
    'query'
    >>> overlap({"query": "other", "tools": [{"name": "f", "parameters": {"x": {}}}]}, held)
    'function'
    >>> overlap({"query": "other", "tools": [{"name": "f", "parameters": {"y": {}}}]}, held) is None
    True
    """
    if query_key(example["query"]) in heldout.queries:
        return "query"
    if any(function_key(tool) in heldout.functions for tool in example["tools"]):
        return "function"
    return None


def drop_test_overlap(examples: Sequence[Example], heldout: HeldOut) -> tuple[list[Example], dict[str, int]]:
    """``examples`` without those that overlap the test, and how many were dropped for which reason."""
    kept: list[Example] = []
    dropped = {"query": 0, "function": 0}
    for example in examples:
        reason = overlap(example, heldout)
        if reason:
            dropped[reason] += 1
        else:
            kept.append(example)
    return kept, dropped
