#!/usr/bin/env bash
# Start `hammer serve` on the embedded SmolLM2-135M model on a free port, wait for /health,
# run a short load against it (loadtest/run.sh), then stop the server.
#
#   loadtest/local.sh [USERS=4] [DURATION=30s] [OUT_DIR] [-- extra hammer serve args]
#   loadtest/local.sh 8 45s loadtest/results/u8 -- --max-queue 16
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
users=${1:-4}
duration=${2:-30s}
out=${3:-$here/results/$(date +%Y%m%d-%H%M%S)-local-u$users}
shift $(( $# < 3 ? $# : 3 ))
[[ ${1:-} == "--" ]] && shift
python=${PYTHON:-python}

port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
mkdir -p "$out"
args=(serve --host 127.0.0.1 --port "$port")
[[ -n ${OPENAI_API_KEY:-} ]] && args+=(--api-key "$OPENAI_API_KEY")
# Run this checkout's server (same as tests/conftest.py), logging to OUT_DIR/server.log.
(cd "$here/.." && exec "$python" -m hammer.cli "${args[@]}" "$@") >"$out/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT

for _ in $(seq 600); do
    if ! kill -0 "$server" 2>/dev/null; then
        echo "server exited; log:" >&2; tail -40 "$out/server.log" >&2; exit 1
    fi
    curl -fsS "$url/health" >/dev/null 2>&1 && break
    sleep 0.5
done
curl -fsS "$url/health" >/dev/null || { echo "server not healthy after 300 s" >&2; exit 1; }

"$here/run.sh" "$url" "$users" "$duration" "$out"
