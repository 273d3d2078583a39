from __future__ import annotations

import json
import subprocess
import sys

from server.cli import main
from tests.training.conftest import SAMPLE


class TestDataBuildCommand:
    def test_builds_rows_and_reports(self, tmp_path, capsys):
        out = tmp_path / "train.jsonl"
        code = main(["data", "build", "--input", str(SAMPLE), "--output", str(out), "--masking-ratio", "0.5",
                     "--irrelevance-ratio", "0.2", "--seed", "3"])
        assert code == 0
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        printed = capsys.readouterr().out
        share = sum(r["irrelevant"] for r in rows) / len(rows)
        assert f"= {len(rows)} rows" in printed and f"irrelevance share {share:.3f}" in printed
        assert abs(share - 0.2) < 0.01
        assert sum(r["masked"] for r in rows) == round(0.5 * len(rows))

    def test_missing_input_exits_2(self, tmp_path, capsys):
        assert main(["data", "build", "--input", str(tmp_path / "none.json"), "--output", str(tmp_path / "o")]) == 2
        assert "none.json" in capsys.readouterr().err

    def test_cli_stays_light(self):
        probe = "import sys; from server.cli import build_parser; build_parser(); print('torch' in sys.modules)"
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
        assert result.stdout.strip() == "False"
