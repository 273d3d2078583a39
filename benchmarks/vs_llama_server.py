"""``hammer serve`` against llama.cpp's own ``llama-server`` on the same GGUF, threads and KV size.

    python benchmarks/vs_llama_server.py                      # 1, 4, 8 clients; TTFT by tool-set age
    python benchmarks/vs_llama_server.py --clients 1 --requests 12 --skip-ttft
    python benchmarks/vs_llama_server.py --build              # build llama-server first (~15 min, 2 cores)

Both servers get the same Hammer prompts and the same GBNF grammars, made by the server's own code
(``convert.convert``, ``constraint_grammar``): ``hammer serve`` through /v1/chat/completions with
tools, ``llama-server`` through /completion with ``"grammar"``. Requests alternate between two tool
sets (a new question each time); throughput is requests/s over the whole run, latency p50/p90 per
request. Both run with --parallel/-np slots of ``--n-ctx`` cells each (llama-server's ``-c`` is the
total). Both servers are up; each measurement runs on one, then on the other (the idle one costs
nothing), so load from other processes on a shared machine hits both about alike: say what else ran.

TTFT by tool-set age: the time to a 1-token answer for a tool set last used ``k`` requests ago, with
``k - 1`` other tool sets in between (k = 1 is a repeat), next to a never-seen tool set.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hammer.processes import free_port, running  # noqa: E402

CACHE = Path.home() / ".cache" / "hammer"
LLAMA_SERVER = CACHE / "llama-server" / "llama-server"
LLAMA_CPP_PYTHON = "0.3.36"  # the llama.cpp source the installed llama-cpp-python was built from


def tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties, "required": required}}}


def s(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


# Two realistic tool sets (~700 prompt tokens each with the Hammer instructions).
TRAVEL = [
    tool("get_weather", "Get the current weather and a short forecast for a city.",
         {"city": s("City name, e.g. Paris"), "unit": s("Temperature unit", enum=["celsius", "fahrenheit"])},
         ["city"]),
    tool("search_flights", "Search direct and connecting flights between two airports on a date.",
         {"origin": s("IATA code of the departure airport"), "destination": s("IATA code of the arrival airport"),
          "date": s("Departure date, YYYY-MM-DD"), "passengers": {"type": "integer", "description": "travellers"}},
         ["origin", "destination", "date"]),
    tool("book_hotel", "Book a hotel room in a city for a range of nights.",
         {"city": s("City"), "check_in": s("YYYY-MM-DD"), "nights": {"type": "integer", "description": "nights"}},
         ["city", "check_in", "nights"]),
    tool("convert_currency", "Convert an amount of money from one currency to another at today's rate.",
         {"amount": {"type": "number", "description": "amount"}, "source": s("ISO code, e.g. EUR"),
          "target": s("ISO code, e.g. USD")}, ["amount", "source", "target"]),
]
OFFICE = [
    tool("send_email", "Send an email to one recipient.",
         {"to": s("Email address"), "subject": s("Subject line"), "body": s("Message text")}, ["to", "subject"]),
    tool("create_event", "Create a calendar event.",
         {"title": s("Event title"), "date": s("YYYY-MM-DD"), "time": s("HH:MM, 24-hour"),
          "attendees": {"type": "array", "items": {"type": "string"}, "description": "email addresses"}},
         ["title", "date"]),
    tool("get_stock_price", "Latest trading price of a stock by its ticker symbol.",
         {"ticker": s("Ticker symbol, e.g. AAPL")}, ["ticker"]),
    tool("search_documents", "Full-text search over the company's shared documents.",
         {"query": s("Words to search for"), "limit": {"type": "integer", "description": "most results"}},
         ["query"]),
]
QUESTIONS = {
    "travel": ["What's the weather in Paris?", "Find flights from JFK to LHR on 2025-07-01.",
               "Book a hotel in Rome from 2025-05-03 for 3 nights.", "Convert 100 EUR to USD.",
               "Is it cold in Oslo today?", "Flights from SFO to NRT on 2025-09-12 for 2 people?"],
    "office": ["Email bob@example.com that the report is ready.", "What is the price of IBM stock?",
               "Schedule a meeting called Review on 2025-06-02 at 14:00.", "Search the documents for budget 2025.",
               "How much is one share of TSLA?", "Send ann@example.com the subject Lunch."],
}


def distinct_tool_sets(n: int) -> list[list[dict[str, Any]]]:
    """Tool sets that share nothing after the Hammer instructions (for the TTFT-by-age runs)."""
    return [[tool(f"lookup_{i}_{k}", f"Looks up records of kind {k} in registry {i} by an identifier. " * 3,
                  {"id": s(f"identifier in registry {i}")}, ["id"]) for k in range(4)] for i in range(n)]


class Target:
    """One server: how to send it a Hammer request, given the rendered prompt and grammar."""

    def __init__(self, name: str, url: str, send: Callable[..., float]) -> None:
        self.name, self.url, self.send = name, url, send


def hammer_send(url: str) -> Callable[..., float]:
    import httpx
    from hammer.server.settings import EMBEDDED_NAME

    def send(tools: list[dict[str, Any]], question: str, max_tokens: int, **_: Any) -> float:
        start = time.perf_counter()
        response = httpx.post(f"{url}/v1/chat/completions", timeout=600, json={
            "model": EMBEDDED_NAME, "messages": [{"role": "user", "content": question}], "tools": tools,
            "temperature": 0, "max_tokens": max_tokens})
        response.raise_for_status()
        return time.perf_counter() - start
    return send


def llama_send(url: str, render: Callable[..., tuple[str, str]]) -> Callable[..., float]:
    import httpx

    def send(tools: list[dict[str, Any]], question: str, max_tokens: int, **_: Any) -> float:
        prompt, grammar = render(tools, question, max_tokens)
        start = time.perf_counter()
        response = httpx.post(f"{url}/completion", timeout=600, json={
            "prompt": prompt, "grammar": grammar, "temperature": 0, "n_predict": max_tokens, "cache_prompt": True})
        response.raise_for_status()
        return time.perf_counter() - start
    return send


def renderer() -> Callable[..., tuple[str, str]]:
    """The prompt and grammar ``hammer serve`` makes for a request, for llama-server."""
    from hammer.server.backends.llamacpp import constraint_grammar
    from hammer.server.convert import convert
    from hammer.server.protocol import ChatCompletionRequest
    from hammer.server.settings import Settings

    settings = Settings()

    def render(tools: list[dict[str, Any]], question: str, max_tokens: int) -> tuple[str, str]:
        body = {"model": "any", "messages": [{"role": "user", "content": question}], "tools": tools,
                "temperature": 0, "max_tokens": max_tokens}
        converted = convert(ChatCompletionRequest.model_validate(body), settings, lambda m: "")
        assert converted.constraint is not None
        return converted.prompt, constraint_grammar(converted.constraint, settings.schema_limits())
    return render


def throughput(target: Target, clients: int, requests: int, max_tokens: int, sets: int = 2) -> dict[str, float]:
    """``requests`` requests from ``clients`` threads, the first ``sets`` tool sets taking turns, a new
    question each."""
    work = [(TRAVEL if i % sets == 0 else OFFICE, QUESTIONS["travel" if i % sets == 0 else "office"][(i // sets) % 6])
            for i in range(requests)]
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(lambda w: target.send(w[0], w[1], max_tokens), work))
    wall = time.perf_counter() - start
    cuts = statistics.quantiles(latencies, n=10)
    return {"rps": requests / wall, "p50": statistics.median(latencies), "p90": cuts[8]}


def ttft_by_age(target: Target, ages: list[int]) -> dict[str, float]:
    """Time to a 1-token answer for a tool set last used ``k`` requests ago (median of 2 tries)."""
    sets = distinct_tool_sets(2 * (max(ages) + 2) + 2)
    fresh = iter(sets)
    result: dict[str, float] = {}
    cold = [target.send(next(fresh), "Look up id 7.", 1) for _ in range(2)]
    result["never seen"] = statistics.median(cold)
    for k in ages:
        tries = []
        for attempt in range(2):
            target_set = sets[-1 - attempt]
            target.send(target_set, "Look up id 1.", 1)
            for other in range(k - 1):
                target.send(sets[other + attempt], "Look up id 2.", 1)
            tries.append(target.send(target_set, "Look up id 3.", 1))
        result[f"{k} ago"] = statistics.median(tries)
    return result


def build_llama_server() -> Path:
    """llama.cpp's server from the source in the llama-cpp-python sdist, cached under ~/.cache/hammer."""
    src = CACHE / "llama-src"
    src.mkdir(parents=True, exist_ok=True)
    sdist = src / f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
    if not sdist.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                        f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", str(src)], check=True)
    subprocess.run(["tar", "xzf", str(sdist), "-C", str(src)], check=True)
    tree = src / f"llama_cpp_python-{LLAMA_CPP_PYTHON}" / "vendor" / "llama.cpp"
    nice = ["nice", "-n", "10"]
    subprocess.run([*nice, "cmake", "-B", "build", "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF",
                    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF"], cwd=tree, check=True)
    subprocess.run([*nice, "cmake", "--build", "build", "--target", "llama-server", "-j", str(os.cpu_count() or 2)],
                   cwd=tree, check=True)
    LLAMA_SERVER.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(f"cp -a {tree / 'build' / 'bin'}/* {LLAMA_SERVER.parent}/", shell=True, check=True)
    return LLAMA_SERVER


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-server", type=Path, default=LLAMA_SERVER, help="binary (default: %(default)s)")
    parser.add_argument("--build", action="store_true", help="build llama-server into ~/.cache/hammer first")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--parallel", type=int, default=4, help="slots on both servers (default: %(default)s)")
    parser.add_argument("--n-ctx", type=int, default=2048, help="cells per slot (default: %(default)s)")
    parser.add_argument("--clients", default="1,4,8", help="concurrency levels (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=32, help="requests per level (default: %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=64, help="(default: %(default)s)")
    parser.add_argument("--ages", default="1,2,4,8", help="TTFT: tool set last used k requests ago")
    parser.add_argument("--skip-ttft", action="store_true")
    args = parser.parse_args()

    from hammer.server.settings import embedded_model_path

    binary = build_llama_server() if args.build else args.llama_server
    if not binary.exists():
        print(f"no llama-server at {binary}: run with --build (or --llama-server PATH)", file=sys.stderr)
        return 2
    gguf = str(embedded_model_path())  # hammer serve's default model
    levels = [int(c) for c in args.clients.split(",")]
    ages = [int(k) for k in args.ages.split(",")]
    logs = Path(tempfile.mkdtemp(prefix="vs-llama-server-"))
    servers = {
        "hammer": [sys.executable, "-m", "hammer.cli", "serve", "--n-threads", str(args.threads),
                   "--n-ctx", str(args.n_ctx), "--parallel", str(args.parallel), "--log-level", "warning"],
        "llama-server": [str(binary), "-m", gguf, "-t", str(args.threads), "-tb", str(args.threads),
                         "-c", str(args.n_ctx * args.parallel), "-np", str(args.parallel), "-fa", "on"],
    }
    results: dict[str, dict[str, dict[str, float]]] = {name: {} for name in servers}
    with contextlib.ExitStack() as stack:
        targets = []
        for name, cmd in servers.items():
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            stack.enter_context(running([*cmd, "--port", str(port)], f"{url}/health", logs / f"{name}.log"))
            targets.append(Target(name, url, hammer_send(url) if name == "hammer" else llama_send(url, renderer())))
        # Each measurement runs on one server, then at once on the other: load from other processes
        # on a shared machine then hits both alike.
        for target in targets:
            throughput(target, 1, 2, args.max_tokens)  # warm: both tool sets once
        for c in levels:
            for target in targets:
                results[target.name][f"{c} clients"] = throughput(target, c, args.requests, args.max_tokens)
        for target in targets:
            results[target.name]["one set"] = throughput(target, 1, args.requests, args.max_tokens, sets=1)
        if not args.skip_ttft:
            for target in targets:
                results[target.name]["ttft"] = ttft_by_age(target, ages)

    hammer, llama = results["hammer"], results["llama-server"]
    print(f"\nSmolLM2-135M Q4_1, {args.threads} threads, {args.parallel} slots x {args.n_ctx} cells, "
          f"{args.requests} requests per level, max_tokens {args.max_tokens}, two alternating tool sets\n")
    print("| clients | hammer req/s | llama-server req/s | ratio | hammer p50 / p90 s | llama-server p50 / p90 s |")
    print("|---|---|---|---|---|---|")
    for c in levels:
        h, ll = hammer[f"{c} clients"], llama[f"{c} clients"]
        print(f"| {c} | {h['rps']:.2f} | {ll['rps']:.2f} | {h['rps'] / ll['rps']:.2f}x | "
              f"{h['p50']:.2f} / {h['p90']:.2f} | {ll['p50']:.2f} / {ll['p90']:.2f} |")
    h, ll = hammer["one set"], llama["one set"]
    print(f"| 1, one warm tool set | {h['rps']:.2f} | {ll['rps']:.2f} | {h['rps'] / ll['rps']:.2f}x | "
          f"{h['p50']:.2f} / {h['p90']:.2f} | {ll['p50']:.2f} / {ll['p90']:.2f} |")
    if not args.skip_ttft:
        print("\n| tool set | hammer TTFT s | llama-server TTFT s |")
        print("|---|---|---|")
        for key in hammer["ttft"]:
            print(f"| {key} | {hammer['ttft'][key]:.3f} | {llama['ttft'][key]:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
