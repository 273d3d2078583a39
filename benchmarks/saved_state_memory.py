"""Where the llama.cpp engine keeps saved prompt states: malloc (``np.empty``, as before) against an
anonymous mapping per state (``_host_buffer``, now). Each runs in a fresh process, on a worker
thread as in the engine, through the real ``PrefixCache``: prompts of 300-800 tokens at SmolLM2's
23 KiB of KV per token, a budget of 2048 tokens, states copied in as ``llama_state_seq_get_data``
would.

    python benchmarks/saved_state_memory.py
    python benchmarks/saved_state_memory.py --prompts 400 --budget 8192

Prints, per allocator, the time to make room for a state and copy it in, and how far the process's
memory grew after the cache was full, against what the cache holds.
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KV_BYTES_PER_TOKEN = 23_040  # SmolLM2-135M: 30 layers x 2 (K, V) x 3 KV heads x 64 x 2 bytes (f16)


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def churn(allocator: str, prompts: int, budget: int) -> str:
    """The cache filled, then ``prompts`` more stored: one result line."""
    import numpy as np
    from hammer.server.backends.llamacpp_engine import _host_buffer
    from hammer.server.backends.prefix_cache import PrefixCache

    allocate = _host_buffer if allocator == "mapping" else (lambda size: np.empty(size, dtype=np.uint8))
    source = np.random.default_rng(0).integers(0, 256, 800 * KV_BYTES_PER_TOKEN, dtype=np.uint8)
    cache: PrefixCache[np.ndarray] = PrefixCache(budget)
    rng = random.Random(0)
    times: list[float] = []
    marks: dict[str, float] = {}

    def store(i: int) -> None:
        length = rng.randint(300, 800)
        started = time.perf_counter()
        state = allocate(length * KV_BYTES_PER_TOKEN)
        state[:] = source[:len(state)]  # what llama_state_seq_get_data writes
        times.append(time.perf_counter() - started)
        cache.store([i, *range(100_000, 100_000 + length - 1)][:length], state, None)

    def worker() -> None:
        i = 0
        while cache.stats().evictions < 3:  # full
            store(i)
            i += 1
        marks["full"] = rss_mib()
        for j in range(prompts):
            store(i + j)
        marks["end"] = rss_mib()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    held = sum(len(entry.state) for entry in cache.entries()) / 2**20
    ms = sorted(t * 1000 for t in times)
    return (f"| {allocator} | {sum(ms) / len(ms):.1f} / {ms[len(ms) // 2]:.1f} / {ms[-1]:.1f} | "
            f"{marks['end'] - marks['full']:+.1f} | {held:.0f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200, help="prompts stored after the cache is full")
    parser.add_argument("--budget", type=int, default=2048, help="the cache's budget in tokens (--cache-tokens)")
    parser.add_argument("--one", choices=("heap", "mapping"), help=argparse.SUPPRESS)  # the child's part
    args = parser.parse_args()
    if args.one:
        print(churn(args.one, args.prompts, args.budget))
        return 0
    print(f"{args.prompts} prompts of 300-800 tokens after the cache ({args.budget} tokens) is full\n")
    print("| states in | ms per save: mean / p50 / max | RSS growth once full, MiB | cache holds, MiB |")
    print("|---|---|---|---|")
    for allocator in ("heap", "mapping"):
        line = subprocess.run([sys.executable, __file__, "--one", allocator, "--prompts", str(args.prompts),
                               "--budget", str(args.budget)], check=True, capture_output=True, text=True,
                              cwd=ROOT).stdout.strip()
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
