"""``hammer eval`` end to end against the real server on the embedded model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("bfcl_eval")
pytest.importorskip("openai")


@pytest.mark.slow
def test_eval_against_the_real_server_plain_and_masked(llama_server, tmp_path):
    out = tmp_path / "eval"
    # The first entries, whose outcome on the embedded model at temperature 0 is known: it answers both
    # simple_python questions with the right call, names and masked names alike (and calls a tool on
    # both irrelevance questions).
    cmd = [sys.executable, "-m", "hammer.cli", "eval", "--base-url", llama_server, "--label", "hammer",
           "--categories", "simple_python,irrelevance", "--limit", "2", "--first", "--mask-names", "--seed", "1",
           "--timeout", "600", "--max-tokens", "64", "--output", str(out)]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-2000:]

    data = json.loads((out / "results.json").read_text())
    runs = {(r["label"], r["masked"]): r for r in data["runs"]}
    assert set(runs) == {("hammer", False), ("hammer", True)}
    for run in runs.values():
        assert run["model"] == "smollm2-135m-instruct"
        records = {r["id"]: r for r in run["records"]}
        assert list(records) == ["simple_python_0", "simple_python_1", "irrelevance_0", "irrelevance_1"]
        assert run["summary"]["errors"] == 0, [r["reply"]["error"] for r in run["records"]]
        for entry_id in ("simple_python_0", "simple_python_1"):
            verdict = records[entry_id]["verdict"]
            assert verdict["passed"] and verdict["calls_total"] == verdict["calls_valid"] == 1, records[entry_id]
        for entry_id in ("irrelevance_0", "irrelevance_1"):  # passes exactly when no tool was called
            verdict = records[entry_id]["verdict"]
            assert verdict["passed"] == (verdict["calls_total"] == 0), records[entry_id]
        assert run["summary"]["categories"]["simple_python"]["accuracy"] == 1.0
        # the server promises calls that validate against the tool's schema
        assert run["summary"]["calls_valid_share"] == 1.0
    plain = runs[("hammer", False)]["records"][0]["reply"]["tool_calls"][0]
    masked = runs[("hammer", True)]["records"][0]["reply"]["tool_calls"][0]
    assert plain["name"] == "calculate_triangle_area"
    assert masked["name"] == runs[("hammer", True)]["records"][0]["request"]["tools"][0]["function"]["name"]
    assert masked["name"] != "calculate_triangle_area"
    report = (out / "report.md").read_text()
    assert "## Function masking" in report and "| hammer | simple_python | 100.0% | 100.0% | +0.0 |" in report
    assert "Sample: the first 2 entries of each category." in report
    assert (out / "accuracy.svg").exists() and (out / "latency.svg").exists()
