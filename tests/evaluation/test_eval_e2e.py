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
    cmd = [sys.executable, "-m", "hammer.cli", "eval", "--base-url", llama_server, "--label", "hammer",
           "--categories", "simple_python,irrelevance", "--limit", "2", "--mask-names", "--seed", "1",
           "--timeout", "600", "--max-tokens", "64", "--output", str(out)]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-2000:]

    data = json.loads((out / "results.json").read_text())
    runs = {(r["label"], r["masked"]): r for r in data["runs"]}
    assert set(runs) == {("hammer", False), ("hammer", True)}
    for run in runs.values():
        assert run["model"] == "smollm2-135m-instruct"
        assert [r["id"] for r in run["records"]] == ["simple_python_0", "simple_python_1", "irrelevance_0",
                                                     "irrelevance_1"]
        assert run["summary"]["errors"] == 0, [r["reply"]["error"] for r in run["records"]]
        # the server promises calls that validate against the tool's schema
        assert run["summary"]["calls_valid_share"] in (None, 1.0)
    masked_tools = runs[("hammer", True)]["records"][0]["request"]["tools"]
    assert masked_tools[0]["function"]["name"] != "calculate_triangle_area"
    report = (out / "report.md").read_text()
    assert "## Function masking" in report and "| hammer | simple_python |" in report
    assert (out / "accuracy.svg").exists() and (out / "latency.svg").exists()
