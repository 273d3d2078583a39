"""Print the runs' <prefix>_summary.json files (written by locustfile.py) as one Markdown table.

    python loadtest/summarize.py RESULTS_DIR [RESULTS_DIR ...]

requests/s counts successful chat requests only (not the TTFT rows, not 429 rejections), over the
time from the start of the run until Locust stopped; percentiles are nearest-rank over all of them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = ["users", "requests_ok", "requests_per_s", "p50_ms", "p99_ms", "ttft_count", "ttft_p50_ms",
           "ttft_p99_ms", "failures", "rejected_429", "elapsed_s"]


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for directory in argv:
        summary = json.loads((Path(directory) / "locust_summary.json").read_text())
        print("| " + " | ".join(str(summary.get(c)) for c in COLUMNS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
