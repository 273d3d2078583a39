"""Time the server adds per request over calling ``llama_cpp`` directly with the same prompt and grammar.

    python benchmarks/server_overhead.py            # 30 pairs, 32 new tokens, temperature 0
    python benchmarks/server_overhead.py -n 100 --max-tokens 8

The prompt and the GBNF grammar come from the server's own code (``convert.convert`` and
``constraint_grammar``), so both paths decode exactly the same tokens; the benchmark checks
that the token counts agree. Requests alternate (direct, server, direct, ...) so load from
other processes hits both alike; overhead is reported as the median of the paired
differences (server − direct), plus the medians of each side. Both sides use the same
number of threads. Target: under 2 ms at p50.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hammer.processes import free_port, running

# No free-form string parameter: llama.cpp's grammar for a bounded string (maxLength) is slow to
# build, and that cost (the same on both paths) would bury a few milliseconds of overhead in noise.
TOOLS = [{"type": "function", "function": {
    "name": "get_forecast", "description": "Weather forecast for a city.",
    "parameters": {"type": "object", "required": ["city", "days"], "properties": {
        "city": {"type": "string", "enum": ["Paris", "London", "Tokyo"], "description": "city"},
        "days": {"type": "integer", "description": "number of days"}}}}}]
MESSAGES = [{"role": "user", "content": "What is the weather in Paris for the next 3 days?"}]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help="request pairs (default: %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens per request (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                        help="llama.cpp threads, both sides (default: half the cores; all cores oversubscribe "
                             "a shared machine)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured pairs first (default: %(default)s)")
    args = parser.parse_args()

    import httpx
    import llama_cpp
    from hammer.server.backends.llamacpp import constraint_grammar
    from hammer.server.convert import convert
    from hammer.server.protocol import ChatCompletionRequest
    from hammer.server.settings import EMBEDDED_NAME, Settings, embedded_model_path

    settings = Settings(n_threads=args.threads)
    body = {"model": EMBEDDED_NAME, "messages": MESSAGES, "tools": TOOLS, "temperature": 0,
            "max_tokens": args.max_tokens}
    converted = convert(ChatCompletionRequest.model_validate(body), settings, lambda m: "")
    prompt, constraint = converted.prompt, converted.constraint
    gguf = str(embedded_model_path())
    llama = llama_cpp.Llama(model_path=gguf, n_ctx=settings.n_ctx, n_threads=args.threads,
                            n_threads_batch=args.threads, verbose=False)
    grammar_text = constraint_grammar(constraint, settings.schema_limits())

    def direct() -> tuple[float, int]:
        start = time.perf_counter()
        grammar = llama_cpp.LlamaGrammar.from_string(grammar_text, verbose=False)  # the server builds one per request
        tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        count = 0
        for token in llama.generate(tokens, temp=0.0, top_p=1.0, top_k=1, min_p=0.0, repeat_penalty=1.0,
                                    grammar=grammar, reset=True):
            if llama_cpp.llama_token_is_eog(llama._model.vocab, token):
                break
            llama.detokenize([token])
            count += 1
            if count >= args.max_tokens:
                break
        return time.perf_counter() - start, count

    port = free_port()
    cmd = [sys.executable, "-m", "hammer.cli", "serve", "--backend", "llama", "--port", str(port),
           "--n-threads", str(args.threads), "--log-level", "warning"]
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "server_overhead.log"
    url = f"http://127.0.0.1:{port}"
    with running(cmd, f"{url}/health", log), httpx.Client(base_url=url, timeout=600) as client:
        def served() -> tuple[float, int]:
            start = time.perf_counter()
            response = client.post("/v1/chat/completions", json=body)
            elapsed = time.perf_counter() - start
            response.raise_for_status()
            return elapsed, response.json()["usage"]["completion_tokens"]

        pairs = []
        for i in range(args.warmup + args.n):
            d, s = direct(), served()
            print(f"pair {i + 1 - args.warmup}: direct {1000 * d[0]:.1f} ms, server {1000 * s[0]:.1f} ms",
                  file=sys.stderr, flush=True)
            if i >= args.warmup:
                pairs.append((d, s))
    mismatched = sum(d[1] != s[1] for d, s in pairs)
    direct_ms = [1000 * d[0] for d, _ in pairs]
    server_ms = [1000 * s[0] for _, s in pairs]
    overhead = [s - d for d, s in zip(direct_ms, server_ms)]
    print(f"{args.n} requests, {pairs[0][0][1]} completion tokens each, {args.threads} threads, temperature 0")
    print("| path | p50 ms | mean ms |\n|---|---|---|")
    print(f"| llama_cpp direct (same prompt + grammar) | {statistics.median(direct_ms):.1f} | "
          f"{statistics.fmean(direct_ms):.1f} |")
    print(f"| hammer serve (HTTP, non-streaming) | {statistics.median(server_ms):.1f} | {statistics.fmean(server_ms):.1f} |")
    print(f"| **overhead** (paired server − direct) | {statistics.median(overhead):.1f} | "
          f"{statistics.fmean(overhead):.1f} |")
    if mismatched:
        print(f"warning: {mismatched} pairs decoded a different number of tokens", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
