"""Numbers for the report, computed from the records of one run."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from hammer.evaluation.f1 import f1_scores


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0–100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _f1_pairs(records: list[dict[str, Any]]) -> list[tuple[list, list]]:
    return [(r["verdict"]["calls"] or [], r["answers"]) for r in records]


def category_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(records)
    passed = sum(r["verdict"]["passed"] for r in records)
    summary: dict[str, Any] = {
        "n": n, "passed": passed, "accuracy": _ratio(passed, n),
        "errors": sum(r["reply"]["error"] is not None for r in records),
    }
    if records and records[0]["scoring"] == "f1":
        summary.update(f1_scores(_f1_pairs(records)))
    return summary


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-category accuracy plus the run's overall figures."""
    categories: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        categories.setdefault(record["category"], []).append(record)
    per_category = {name: category_summary(rs) for name, rs in categories.items()}

    bfcl = [r for r in records if r["scoring"] != "f1"]
    irrelevant = [r for r in bfcl if r["scoring"] == "irrelevance"]
    relevant = [r for r in bfcl if r["scoring"] != "irrelevance"]
    total = sum(r["verdict"]["calls_total"] for r in records)
    checked = total - sum(r["verdict"]["calls_unchecked"] for r in records)
    latencies = [r["reply"]["latency_s"] for r in records if r["reply"]["error"] is None]
    bfcl_accuracies = [s["accuracy"] for name, s in per_category.items()
                       if s["accuracy"] is not None and categories[name][0]["scoring"] != "f1"]
    return {
        "categories": per_category,
        "n": len(records),
        # BFCL's headline number is the unweighted mean over categories.
        "accuracy": sum(bfcl_accuracies) / len(bfcl_accuracies) if bfcl_accuracies else None,
        "accuracy_micro": _ratio(sum(r["verdict"]["passed"] for r in bfcl), len(bfcl)),
        "irrelevance_detection": _ratio(sum(r["verdict"]["passed"] for r in irrelevant), len(irrelevant)),
        "relevance_detection": _ratio(sum(r["verdict"]["has_call"] for r in relevant), len(relevant)),
        "calls_total": total,
        "calls_valid_share": _ratio(sum(r["verdict"]["calls_valid"] for r in records), checked),
        "errors": sum(r["reply"]["error"] is not None for r in records),
        "error_types": dict(Counter(r["verdict"]["error_type"] for r in records
                                    if not r["verdict"]["passed"]).most_common()),
        "latency_s": {f"p{q}": percentile(latencies, q) for q in (50, 90, 99)},
    }
