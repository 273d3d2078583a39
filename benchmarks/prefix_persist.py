"""Does keeping the prefix cache on disk (``--cache-dir``) pay? The first request after a restart,
with and without the saved tool prompt, on the llama.cpp backend in-process.

    python benchmarks/prefix_persist.py            # the embedded SmolLM2, 2 threads
    python benchmarks/prefix_persist.py --threads 1

Prints the time to a 1-token answer on a fresh server with and without the saved prefix, the
time the shutdown spends writing it and the start reading it, and the file size.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.vs_llama_server import QUESTIONS, TRAVEL  # noqa: E402


async def first_token_s(threads: int, cache_dir: Path | None, question: str) -> tuple[float, float, float]:
    """(seconds to start, seconds to a 1-token answer, seconds to shut down) of a fresh backend."""
    from hammer.server.backends.base import GenerationRequest, SamplingParams
    from hammer.server.backends.llamacpp import LlamaCppBackend
    from hammer.server.convert import convert
    from hammer.server.protocol import ChatCompletionRequest
    from hammer.server.settings import Settings

    settings = Settings(n_threads=threads, parallel=1, cache_dir=cache_dir)
    body = {"model": "any", "messages": [{"role": "user", "content": question}], "tools": TRAVEL,
            "temperature": 0, "max_tokens": 1}
    converted = convert(ChatCompletionRequest.model_validate(body), settings, lambda m: "")
    backend = LlamaCppBackend(settings)
    start = time.perf_counter()
    await backend.start()
    started = time.perf_counter()
    request = GenerationRequest(converted.prompt, SamplingParams(max_tokens=1, temperature=0), converted.constraint,
                                converted.plain_texts)
    async for _ in backend.generate(request):
        pass
    answered = time.perf_counter()
    await backend.close()
    return started - start, answered - started, time.perf_counter() - answered


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        cache_dir = Path(folder)
        cold = asyncio.run(first_token_s(args.threads, None, QUESTIONS["travel"][0]))
        saving = asyncio.run(first_token_s(args.threads, cache_dir, QUESTIONS["travel"][0]))
        warm = asyncio.run(first_token_s(args.threads, cache_dir, QUESTIONS["travel"][1]))
        size = sum(path.stat().st_size for path in cache_dir.rglob("*.npz"))
    print(f"| first request after a start | start s | 1-token answer s | shutdown s |\n|---|---|---|---|\n"
          f"| no --cache-dir | {cold[0]:.2f} | {cold[1]:.3f} | {cold[2]:.2f} |\n"
          f"| --cache-dir, nothing saved yet (then saving) | {saving[0]:.2f} | {saving[1]:.3f} | {saving[2]:.2f} |\n"
          f"| --cache-dir, tool prompt saved | {warm[0]:.2f} | {warm[1]:.3f} | {warm[2]:.2f} |\n"
          f"saved: {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
