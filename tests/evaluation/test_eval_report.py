"""Summaries and the report, from hand-made records (no server)."""

from __future__ import annotations

from hammer.evaluation.report import write_report
from hammer.evaluation.summary import percentile, summarize


def record(category: str, passed: bool, scoring: str = "ast", has_call: bool = True, error: str | None = None,
           latency: float = 0.1, calls: int = 1, valid: int = 1) -> dict:
    return {"id": f"{category}_x", "category": category, "scoring": scoring, "masked": False, "answers": [],
            "reply": {"error": error, "latency_s": latency},
            "verdict": {"passed": passed, "has_call": has_call, "calls": None, "calls_total": calls,
                        "calls_valid": valid, "calls_unchecked": 0,
                        "error_type": "" if passed else ("request_error" if error else "value_error:others")}}


RECORDS = [
    record("simple_python", True, latency=0.1), record("simple_python", False, latency=0.3, valid=0),
    record("irrelevance", True, "irrelevance", has_call=False, calls=0, valid=0, latency=0.2),
    record("irrelevance", False, "irrelevance", has_call=False, error="timeout", calls=0, valid=0, latency=60),
]


def test_percentile_is_nearest_rank():
    assert percentile([3, 1, 2, 4], 50) == 2 and percentile([5], 99) == 5 and percentile([], 50) is None


def test_summary_figures():
    s = summarize(RECORDS)
    assert s["categories"]["simple_python"]["accuracy"] == 0.5
    assert s["accuracy"] == 0.5 and s["accuracy_micro"] == 0.5
    assert s["irrelevance_detection"] == 0.5 and s["relevance_detection"] == 1.0
    assert s["calls_valid_share"] == 0.5 and s["errors"] == 1
    assert s["latency_s"]["p50"] == 0.2  # the timed-out request is an error, not a latency
    assert s["error_types"] == {"value_error:others": 1, "request_error": 1}


def test_report_puts_runs_side_by_side_with_the_masking_drop(tmp_path):
    masked = [dict(r, masked=True) for r in RECORDS[1:]] + [record("simple_python", False)]
    runs = [{"label": "hammer", "base_url": "http://a", "model": "m", "masked": False, "records": RECORDS},
            {"label": "hammer", "base_url": "http://a", "model": "m", "masked": True, "records": masked},
            {"label": "peer", "base_url": "http://b", "model": "m", "masked": False, "records": RECORDS}]
    for run in runs:
        run["summary"] = summarize(run["records"])
    config = {"command": "hammer eval ...", "seed": 3, "sample": "2 entries spread over each category (seed 3)"}
    text = write_report(tmp_path, runs, config).read_text()
    assert "Sample: 2 entries spread over each category (seed 3)." in text
    assert "| simple_python | 2 | 50.0% | 0.0% | 50.0% |" in text
    assert "| hammer | simple_python | 50.0% | 0.0% | +50.0 |" in text
    assert "seed 3" in text and "| hammer | request_error | 1 |" in text
    for chart in ("accuracy.svg", "latency.svg"):
        svg = (tmp_path / chart).read_text()
        assert svg.startswith("<svg") and "hammer (masked)" in svg and "peer" in svg
