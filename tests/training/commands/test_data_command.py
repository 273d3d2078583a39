from __future__ import annotations

import json
import subprocess
import sys

from hammer.cli import main
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
        probe = "import sys; from hammer.cli import build_parser; build_parser(); print('torch' in sys.modules)"
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
        assert result.stdout.strip() == "False"


def write_with_bad_rows(tmp_path):
    """The sample set as JSON Lines with a row lacking 'tools' on line 4 and a malformed 'answers' on line 8."""
    rows = json.loads(SAMPLE.read_text())
    lines = [json.dumps(r) for r in rows]
    del rows[3]["tools"]
    lines[3] = json.dumps(rows[3])
    lines[7] = json.dumps({**rows[7], "answers": '[{"name": "x" "arguments": {}}]'})
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path, len(rows)


class TestDataBuildStopsOnABadRow:
    def test_default_exits_2_with_one_line_naming_row_and_field(self, tmp_path, capsys):
        source, _ = write_with_bad_rows(tmp_path)
        out = tmp_path / "train.jsonl"
        assert main(["data", "build", "--input", str(source), "--output", str(out)]) == 2
        err = capsys.readouterr().err
        assert err == ("hammer data build: row 3 (line 4): 'tools' is missing (build stopped; 1 more bad row; "
                       "--on-error skip leaves bad rows out)\n")
        assert not out.exists()

    def test_malformed_json_in_a_json_list_names_the_index_and_field(self, tmp_path, capsys):
        rows = json.loads(SAMPLE.read_text())
        rows[7]["answers"] = '[{"name": "x" "arguments": {}}]'
        source = tmp_path / "bad.json"
        source.write_text(json.dumps(rows))
        assert main(["data", "build", "--input", str(source), "--output", str(tmp_path / "o.jsonl")]) == 2
        assert capsys.readouterr().err.startswith(
            "hammer data build: row 7: 'answers': Expecting ',' delimiter: line 1 column 15")

    def test_no_traceback_in_a_subprocess(self, tmp_path):
        source, _ = write_with_bad_rows(tmp_path)
        result = subprocess.run([sys.executable, "-m", "hammer.cli", "data", "build", "--input", str(source),
                                 "--output", str(tmp_path / "o.jsonl"), "--on-error", "stop"],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


class TestDataBuildSkipsBadRows:
    def test_skip_builds_the_rest_and_reports_what_it_left_out(self, tmp_path, capsys):
        source, n = write_with_bad_rows(tmp_path)
        out = tmp_path / "train.jsonl"
        assert main(["data", "build", "--input", str(source), "--output", str(out), "--on-error", "skip"]) == 0
        captured = capsys.readouterr()
        assert captured.err.startswith("hammer data build: skipped 2 bad rows: row 3 (line 4): 'tools' is missing; "
                                       "row 7 (line 8): 'answers': Expecting ',' delimiter")
        assert f"{n - 2} source examples" in captured.out
        ids = {json.loads(line)["id"] for line in out.read_text().splitlines()}
        assert not ids & {3, 7}

    def test_skip_lists_only_the_first_few_reasons(self, tmp_path, capsys):
        rows = json.loads(SAMPLE.read_text())
        for row in rows[:6]:
            del row["answers"]
        source = tmp_path / "bad.json"
        source.write_text(json.dumps(rows))
        assert main(["data", "build", "--input", str(source), "--output", str(tmp_path / "o.jsonl"),
                     "--on-error", "skip"]) == 0
        err = capsys.readouterr().err
        assert err.count("'answers' is missing") == 3 and err.rstrip().endswith("; and 3 more")

    def test_all_rows_bad_is_an_error_even_when_skipping(self, tmp_path, capsys):
        source = tmp_path / "bad.json"
        source.write_text(json.dumps([{"query": "q"}]))
        assert main(["data", "build", "--input", str(source), "--output", str(tmp_path / "o.jsonl"),
                     "--on-error", "skip"]) == 2
        assert "has no valid example (1 bad row, first: row 0: 'tools' is missing)" in capsys.readouterr().err
