"""Can one API key tell, by timing, that another key sent a prompt? The real server with two keys,
with the shared prefix cache (the default) and with ``--cache-per-key``.

    python benchmarks/prefix_cache_across_keys.py             # 4 rounds
    python benchmarks/prefix_cache_across_keys.py --rounds 8

Each round: k1 sends a secret prompt (about 1,800 tokens); k2 then sends the same prompt (a right
guess) and another of the same length (a wrong one), each for one token. Prints both times per round.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hammer.processes import served  # noqa: E402
from hammer.server.settings import EMBEDDED_NAME  # noqa: E402

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def secret(seed: int) -> str:
    rng = random.Random(seed)
    return "Secret memo: " + " ".join(rng.choice(WORDS) for _ in range(900))


def answer_s(url: str, key: str, text: str) -> float:
    started = time.monotonic()
    response = httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=300,
                          json={"model": EMBEDDED_NAME, "messages": [{"role": "user", "content": text}],
                                "max_tokens": 1})
    response.raise_for_status()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    for extra in ((), ("--cache-per-key",)):
        with served("--n-ctx", "2048", "--parallel", "1", "--api-key", "k1,k2", *extra) as (_, url):
            answer_s(url, "k1", "hi")
            right, wrong = [], []
            for i in range(args.rounds):
                answer_s(url, "k1", secret(i))
                right.append(answer_s(url, "k2", secret(i)))
                wrong.append(answer_s(url, "k2", secret(1000 + i)))
        name = " ".join(extra) or "shared cache (default)"
        print(f"{name}: k2's right guess {' '.join(f'{t:.2f}' for t in right)} s; "
              f"wrong guess {' '.join(f'{t:.2f}' for t in wrong)} s")


if __name__ == "__main__":
    main()
