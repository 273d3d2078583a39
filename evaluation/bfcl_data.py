"""BFCL's test entries and possible answers, read from the installed ``bfcl-eval`` wheel (no network).

Install the data without BFCL's heavy runtime: ``pip install --no-deps bfcl-eval==2026.3.23``.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

from hammer.evaluation.entries import Entry
from hammer.evaluation.sample import spread_indices

# Single-turn Python categories and how BFCL scores them.
CATEGORY_SCORING: dict[str, str] = {
    "simple_python": "ast",
    "multiple": "ast",
    "parallel": "ast",
    "parallel_multiple": "ast",
    "irrelevance": "irrelevance",
    "live_simple": "ast",
    "live_multiple": "ast",
    "live_parallel": "ast",
    "live_parallel_multiple": "ast",
    "live_irrelevance": "irrelevance",
    "live_relevance": "relevance",
}
DEFAULT_CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance",
                      "live_simple", "live_multiple", "live_irrelevance")
# BFCL adds this to every Python function description before sending it (utils._get_language_specific_hint).
PYTHON_HINT = " Note that the provided function is in Python 3 syntax."


def data_dir() -> Path:
    """``bfcl_eval/data`` of the installed wheel, found without importing BFCL's runtime."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("BFCL data not found: `pip install --no-deps bfcl-eval==2026.3.23`")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _data_file(directory: Path, category: str) -> Path:
    """The newest ``BFCL_v<N>_<category>.json`` (exactly that category: not ``parallel_multiple`` for ``multiple``)."""
    pattern = re.compile(rf"BFCL_v(\d+)_{re.escape(category)}\.json")
    versions = {int(m.group(1)): path for path in directory.glob("BFCL_v*.json") if (m := pattern.fullmatch(path.name))}
    if not versions:
        raise FileNotFoundError(f"no BFCL data for category {category!r} in {directory}")
    return versions[max(versions)]


def load_category(category: str, limit: int | None = None, directory: Path | None = None, *, seed: int = 0,
                  first: bool = False) -> list[Entry]:
    """``limit`` entries spread over the category (a fixed sample for ``seed``; the first ``limit``
    with ``first``), in file order; all of them without ``limit``."""
    if category not in CATEGORY_SCORING:
        raise ValueError(f"unsupported BFCL category {category!r}; choose from {', '.join(CATEGORY_SCORING)}")
    directory = directory or data_dir()
    rows = _read_jsonl(_data_file(directory, category))
    rows = [rows[i] for i in spread_indices(len(rows), limit, seed, category, first)]
    scoring = CATEGORY_SCORING[category]
    answers: dict[str, list[Any]] = {}
    if scoring == "ast":
        answers = {row["id"]: row["ground_truth"]
                   for row in _read_jsonl(_data_file(directory / "possible_answer", category))}
    entries = []
    for row in rows:
        functions = [dict(f, description=f.get("description", "") + PYTHON_HINT) for f in row["function"]]
        entries.append(Entry(id=row["id"], category=category, messages=list(row["question"][0]),
                             functions=functions, answers=answers.get(row["id"], []), scoring=scoring))
    return entries


def load_categories(categories: list[str], limit: int | None = None, *, seed: int = 0,
                    first: bool = False) -> list[Entry]:
    return [entry for category in categories for entry in load_category(category, limit, seed=seed, first=first)]
