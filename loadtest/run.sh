#!/usr/bin/env bash
# Headless Locust run of loadtest/locustfile.py against a running server.
#
#   loadtest/run.sh URL [USERS] [DURATION] [OUT_DIR]
#   loadtest/run.sh http://127.0.0.1:8000 8 45s results/u8
#
# Writes OUT_DIR/locust_stats.csv, locust_stats_history.csv, locust_failures.csv,
# locust_exceptions.csv and OUT_DIR/report.html. Spawns all users in the first second.
# Environment: OPENAI_API_KEY, HAMMER_MODEL_NAME, LOADTEST_MAX_TOKENS, LOADTEST_TIMEOUT (see locustfile.py);
# LOCUST (the locust command, default: locust).
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 URL [USERS=8] [DURATION=45s] [OUT_DIR=loadtest/results/<timestamp>]" >&2
    exit 2
fi
url=$1
users=${2:-8}
duration=${3:-45s}
here=$(cd "$(dirname "$0")" && pwd)
out=${4:-$here/results/$(date +%Y%m%d-%H%M%S)-u$users}
mkdir -p "$out"

# --exit-code-on-error 0: the run's exit status does not depend on failures; read locust_stats.csv.
# --stop-timeout (LOADTEST_STOP_TIMEOUT, default 10 s): in-flight requests get that long to finish after the
# run time; requests still running then are dropped, not counted (keeps a run bounded on a slow server).
${LOCUST:-locust} -f "$here/locustfile.py" --headless --host "$url" \
    --users "$users" --spawn-rate "$users" --run-time "$duration" --stop-timeout "${LOADTEST_STOP_TIMEOUT:-10}" \
    --csv "$out/locust" --html "$out/report.html" --only-summary --exit-code-on-error 0
echo "results: $out"
