#!/usr/bin/env bash
# A new user's first hour, timed: a fresh clone and virtualenv, the README's install, docs/training.md's
# quick start, then the fine-tuned model served and answering a tool call. Usage: benchmarks/first_hour.sh [WORKDIR]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd); work=${1:-$(mktemp -d)}
rm -rf "$work/fresh" && git clone -q "$repo" "$work/fresh" && cd "$work/fresh"
t0=$(date +%s)
step() { echo "== $1: $(( $(date +%s) - t0 )) s"; }
python -m venv .venv/fresh
# shellcheck source=/dev/null
source .venv/fresh/bin/activate
pip install -q --upgrade pip
pip install -q torch==2.13.0            # the CPU build (here the registry's torch is the CPU one)
step "torch installed"
pip install -q -e '.[train,llama]'
step "train+llama extras installed"
du -sh .venv/fresh | sed 's/^/venv size: /'
hammer data build --input training/data/xlam_sample.json --output runs/sample-train.jsonl
step "data build"
hammer train --config training/configs/quickstart-cpu.yaml 2>&1 | tail -1
step "train"
hammer export --adapter runs/quickstart --output runs/quickstart-Q4_K_M.gguf 2>&1 | grep -E "^wrote|^serve"
step "export"
(hammer serve --model runs/quickstart-Q4_K_M.gguf --port 8765 > "$work/serve.log" 2>&1 &)
for _ in $(seq 1 120); do curl -sf localhost:8765/health >/dev/null && break; sleep 1; done
step "serving"
curl -s http://127.0.0.1:8765/v1/chat/completions -H 'Content-Type: application/json' -d '{
  "model": "quickstart-Q4_K_M", "temperature": 0,
  "messages": [{"role": "user", "content": "Weather in Paris?"}],
  "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather for a city",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]}' | head -c 600; echo
step "first answer"
pkill -f "serve --model runs/quickstart-Q4_K_M.gguf --port 8765" || true
