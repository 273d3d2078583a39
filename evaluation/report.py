"""The Markdown report: tables for every run side by side, the masking drop, and two SVG charts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hammer.evaluation.svg import bar_chart, cdf_chart


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{1000 * value:.0f}"


def run_name(run: dict[str, Any]) -> str:
    return run["label"] + (" (masked)" if run["masked"] else "")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def _categories(runs: list[dict[str, Any]], f1: bool) -> list[str]:
    seen: dict[str, None] = {}
    for run in runs:
        for record in run["records"]:
            if (record["scoring"] == "f1") == f1:
                seen.setdefault(record["category"], None)
    return list(seen)


def _masking_rows(runs: list[dict[str, Any]], categories: list[str]) -> list[list[str]]:
    rows = []
    by_key = {(r["label"], r["masked"]): r["summary"] for r in runs}
    for label in dict.fromkeys(r["label"] for r in runs):
        plain, masked = by_key.get((label, False)), by_key.get((label, True))
        if plain is None or masked is None:
            continue
        for category in [*categories, None]:
            a = plain["accuracy"] if category is None else plain["categories"].get(category, {}).get("accuracy")
            b = masked["accuracy"] if category is None else masked["categories"].get(category, {}).get("accuracy")
            drop = "–" if a is None or b is None else f"{100 * (a - b):+.1f}"
            rows.append([label, category or "**overall**", _pct(a), _pct(b), drop])
    return rows


def write_report(directory: Path, runs: list[dict[str, Any]], config: dict[str, Any]) -> Path:
    names = [run_name(r) for r in runs]
    categories = _categories(runs, f1=False)
    lines = ["# hammer eval report", "",
             f"Command: `{config['command']}`", "",
             f"Sample: {config['sample']}.", "",
             ("Scored by bfcl-eval's own AST checker; irrelevance entries pass when no "
              "function is called. Request errors never count as passes."), ""]
    for run in runs:
        lines.append(f"- **{run_name(run)}**: `{run['base_url']}`, model `{run['model']}`")
    lines.append("")

    if categories:
        rows = []
        for category in categories:
            n = next((r["summary"]["categories"][category]["n"] for r in runs
                      if category in r["summary"]["categories"]), 0)
            rows.append([category, str(n), *(_pct(r["summary"]["categories"].get(category, {}).get("accuracy"))
                                             for r in runs)])
        lines += ["## Accuracy by category", "", *_table(["category", "n", *names], rows)]
        lines += ["![accuracy by category](accuracy.svg)", ""]
        (directory / "accuracy.svg").write_text(bar_chart("Accuracy by category (BFCL AST)", categories, {
            run_name(r): [r["summary"]["categories"].get(c, {}).get("accuracy") for c in categories]
            for r in runs}))

    rows = [[run_name(r), _pct(r["summary"]["accuracy"]), _pct(r["summary"]["irrelevance_detection"]),
             _pct(r["summary"]["relevance_detection"]), _pct(r["summary"]["calls_valid_share"]),
             f"{r['summary']['errors']}/{r['summary']['n']}",
             *(_ms(r["summary"]["latency_s"][q]) for q in ("p50", "p90", "p99"))] for r in runs]
    lines += ["## Summary", "", *_table(
        ["run", "accuracy (mean of categories)", "irrelevance detection", "relevance detection",
         "calls valid vs schema", "errors", "p50 ms", "p90 ms", "p99 ms"], rows)]
    lines += [("Relevance detection: share of entries that need a call where the model made one. "
               "Calls valid vs schema: returned calls naming an offered tool with arguments that are JSON "
               "and validate against that tool's JSON Schema. Latency covers requests that did not fail."), "",
              "![latency distribution](latency.svg)", ""]
    (directory / "latency.svg").write_text(cdf_chart("Latency (CDF of successful requests)", {
        run_name(r): [rec["reply"]["latency_s"] for rec in r["records"] if rec["reply"]["error"] is None]
        for r in runs}))

    masking = _masking_rows(runs, categories)
    if masking:
        lines += ["## Function masking: meaningless function and parameter names", "",
                  f"Names replaced by random strings (seed {config['seed']}), descriptions kept.", "",
                  *_table(["target", "category", "names", "masked", "drop (points)"], masking)]

    f1_categories = _categories(runs, f1=True)
    if f1_categories:
        rows = [[c, run_name(r), str(s["n"]), f"{s['name_f1']:.3f}", f"{s['argument_f1']:.3f}", _pct(s["accuracy"])]
                for c in f1_categories for r in runs if (s := r["summary"]["categories"].get(c))]
        lines += ["## Local data sets (F1)", "",
                  *_table(["data set", "run", "n", "function-name F1", "argument F1", "exact match"], rows)]

    rows = [[run_name(r), kind, str(count)] for r in runs for kind, count in r["summary"]["error_types"].items()]
    if rows:
        lines += ["## Failure kinds", "", *_table(["run", "error type", "count"], rows)]
    path = directory / "report.md"
    path.write_text("\n".join(lines))
    return path
