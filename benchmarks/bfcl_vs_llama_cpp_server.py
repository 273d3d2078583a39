"""The embedded model through this server vs through llama-cpp-python's own server, on a fixed BFCL sample.

    python benchmarks/bfcl_vs_llama_cpp_server.py                       # 25 entries spread over each category
    python benchmarks/bfcl_vs_llama_cpp_server.py --limit 5 --mask-names

Starts ``hammer serve`` and ``python -m llama_cpp.server --chat_format chatml-function-calling``
on free ports with the same GGUF and context length, then runs one ``hammer eval --compare``
(accuracy by BFCL's AST rules, share of calls valid against their schema, errors, latency).
A peer request that hangs is cut by ``--timeout`` and counted as an error.
Needs ``pip install -e '.[llama,eval]' sse-starlette starlette-context`` (the peer server's extras)
and ``pip install --no-deps bfcl-eval==2026.3.23``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hammer.processes import free_port, running


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--categories", default="simple_python,multiple,parallel,irrelevance")
    parser.add_argument("--limit", type=int, default=25,
                        help="entries per category, spread over it (default: %(default)s)")
    parser.add_argument("--first", action="store_true", help="the first --limit entries instead (hammer eval --first)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per request (default: %(default)s)")
    parser.add_argument("--n-ctx", type=int, default=4096, help="context length of both servers")
    # Same thread count on both sides (both default to half the cores), set explicitly so runs compare.
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                        help="llama.cpp threads of both servers (default: half the cores, llama_cpp.server's default)")
    parser.add_argument("--mask-names", action="store_true", help="also run with meaningless names")
    parser.add_argument("--output", default="runs/bfcl_vs_llama_cpp_server", help="report directory")
    args = parser.parse_args()
    # Stop both servers when the benchmark is killed, not only on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from hammer.server.settings import embedded_model_path

    gguf = str(embedded_model_path())
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    hammer_port, peer_port = free_port(), free_port()
    hammer_cmd = [sys.executable, "-m", "hammer.cli", "serve", "--backend", "llama", "--port", str(hammer_port),
                  "--n-ctx", str(args.n_ctx), "--n-threads", str(args.threads)]
    peer_cmd = [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--chat_format", "chatml-function-calling",
                "--host", "127.0.0.1", "--port", str(peer_port), "--n_ctx", str(args.n_ctx),
                "--n_threads", str(args.threads), "--n_threads_batch", str(args.threads)]
    hammer_url, peer_url = f"http://127.0.0.1:{hammer_port}", f"http://127.0.0.1:{peer_port}"
    # /v1/models: llama_cpp.server has no /health.
    with running(hammer_cmd, f"{hammer_url}/v1/models", output / "hammer.log"), \
            running(peer_cmd, f"{peer_url}/v1/models", output / "llama_cpp_server.log"):
        eval_cmd = [sys.executable, "-m", "hammer.cli", "eval", "--base-url", hammer_url, "--label", "hammer serve",
                    "--compare", peer_url, "--compare-label", "llama_cpp.server", "--compare-model", gguf,
                    "--categories", args.categories, "--limit", str(args.limit), "--timeout", str(args.timeout),
                    "--output", str(output), *(["--mask-names"] if args.mask_names else []),
                    *(["--first"] if args.first else [])]
        return subprocess.run(eval_cmd, cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
