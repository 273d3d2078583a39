"""Scripted agent tasks (one to three tool steps) through the openai SDK loop: does the loop end with the answer?

    python benchmarks/agent_tasks.py --out runs/agent_tasks.json
    python benchmarks/agent_tasks.py --limit 5 --servers hammer --out /tmp/agent_tasks.json

Starts ``hammer serve`` and ``python -m llama_cpp.server --chat_format chatml-function-calling`` on
free ports with the same GGUF (the embedded SmolLM2-135M), context length and thread count, then runs
every task on each server in turn: the user question with the task's tools, each returned call run
by a deterministic fake tool and sent back as a ``tool`` message, until the answer is text or
``--max-turns`` model requests were made. Both servers get ``tool_choice="auto"`` (llama-cpp-python's
``chatml-function-calling`` ignores the tools without it), temperature 0 and seed 0.

Per server: tasks that finished (a text answer before the turn limit), tasks whose answer holds the
expected value, mean model requests per task, calls the client saw repeated (same name and arguments
as an earlier call of the task), duplicate calls the server dropped (``/metrics`` counter
``hammer_duplicate_calls_dropped_total`` read before and after; "n/a" where a server has none) and
the median time per task. Prints a markdown table and writes every task's transcript to ``--out``.
Needs ``pip install -e '.[llama,test]' sse-starlette starlette-context`` (the peer server's extras).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hammer.processes import free_port, running

DUPLICATES_METRIC = "hammer_duplicate_calls_dropped_total"
SERVERS = ("hammer", "llama-cpp-python")

# ---------------------------------------------------------------------------------------------
# The fake world the tools answer from.
# Two-digit values that no question holds, so an answer that states one did not copy it from elsewhere.
WEATHER = {"paris": 17, "london": 12, "tokyo": 23, "cairo": 31, "oslo": 14, "sydney": 19, "madrid": 26, "berlin": 11}
CAPITALS = {"france": "Paris", "japan": "Tokyo", "egypt": "Cairo", "norway": "Oslo", "spain": "Madrid",
            "germany": "Berlin", "australia": "Canberra", "united kingdom": "London"}
RATES = {("USD", "EUR"): 0.92, ("USD", "JPY"): 150, ("EUR", "USD"): 1.09, ("GBP", "USD"): 1.27}
STOCKS = {"AAPL": 187.5, "MSFT": 410, "NVDA": 120}
USER_IDS = {"alice": 1042, "bob": 2077, "carol": 3011, "dave": 4120}
EMAILS = {1042: "alice@example.com", 2077: "bob@example.com", 3011: "carol@example.com", 4120: "dave@example.com"}
MANAGERS = {1042: 2077, 3011: 1042, 4120: 3011}
ORDERS = {551: 3011, 612: 1042, 730: 4120}


def number(x: float) -> str:
    """12.0 -> "12", 53.60000001 -> "53.6"."""
    x = round(float(x), 4)
    return str(int(x)) if x == int(x) else f"{x:g}"


def _key(value: Any) -> str:
    return str(value).strip().lower()


def get_weather(city: str) -> str:
    t = WEATHER.get(_key(city))
    return f"It is {t} degrees Celsius in {city.strip().title()}." if t is not None else f"No weather data for {city}."


def get_capital(country: str) -> str:
    capital = CAPITALS.get(_key(country))
    return f"The capital of {country.strip().title()} is {capital}." if capital else f"No capital known for {country}."


def celsius_to_fahrenheit(celsius: float) -> str:
    c = float(celsius)
    return f"{number(c)} degrees Celsius is {number(c * 9 / 5 + 32)} degrees Fahrenheit."


def get_exchange_rate(base: str, target: str) -> str:
    base, target = base.strip().upper(), target.strip().upper()
    rate = RATES.get((base, target))
    return f"1 {base} = {number(rate)} {target}." if rate is not None else f"No rate for {base} to {target}."


def multiply(a: float, b: float) -> str:
    return f"{number(a)} times {number(b)} is {number(float(a) * float(b))}."


def get_stock_price(symbol: str) -> str:
    price = STOCKS.get(symbol.strip().upper())
    return f"{symbol.strip().upper()} trades at {number(price)} US dollars." if price is not None \
        else f"No price for {symbol}."


def find_user_id(name: str) -> str:
    uid = USER_IDS.get(_key(name))
    return f"The user id of {name.strip().title()} is {uid}." if uid else f"No user named {name}."


def get_user_email(user_id: int) -> str:
    email = EMAILS.get(int(user_id))
    return f"The email address of user {int(user_id)} is {email}." if email else f"No user with id {user_id}."


def get_manager_id(user_id: int) -> str:
    manager = MANAGERS.get(int(user_id))
    return f"The manager of user {int(user_id)} is user {manager}." if manager else f"User {user_id} has no manager."


def get_order_owner(order_id: int) -> str:
    owner = ORDERS.get(int(order_id))
    return f"Order {int(order_id)} belongs to user {owner}." if owner else f"No order {order_id}."


def _spec(fn: Callable[..., str], description: str, **properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": fn.__name__, "description": description,
        "parameters": {"type": "object", "properties": properties, "required": list(properties)}}}


STRING, NUMBER, INTEGER = {"type": "string"}, {"type": "number"}, {"type": "integer"}
TOOLS: dict[str, tuple[Callable[..., str], dict[str, Any]]] = {fn.__name__: (fn, spec) for fn, spec in [
    (get_weather, _spec(get_weather, "Get the current temperature in degrees Celsius in a city",
                        city={**STRING, "description": "City name, e.g. Paris"})),
    (get_capital, _spec(get_capital, "Get the capital city of a country",
                        country={**STRING, "description": "Country name, e.g. France"})),
    (celsius_to_fahrenheit, _spec(celsius_to_fahrenheit, "Convert a temperature from Celsius to Fahrenheit",
                                  celsius={**NUMBER, "description": "Temperature in degrees Celsius"})),
    (get_exchange_rate, _spec(get_exchange_rate, "Get the exchange rate between two currencies",
                              base={**STRING, "description": "Currency code to convert from, e.g. USD"},
                              target={**STRING, "description": "Currency code to convert to, e.g. EUR"})),
    (multiply, _spec(multiply, "Multiply two numbers", a=NUMBER, b=NUMBER)),
    (get_stock_price, _spec(get_stock_price, "Get the current price of one share of a stock in US dollars",
                            symbol={**STRING, "description": "Ticker symbol, e.g. AAPL"})),
    (find_user_id, _spec(find_user_id, "Find the user id of a person by name",
                         name={**STRING, "description": "First name of the user"})),
    (get_user_email, _spec(get_user_email, "Get the email address of a user", user_id=INTEGER)),
    (get_manager_id, _spec(get_manager_id, "Get the user id of the manager of a user", user_id=INTEGER)),
    (get_order_owner, _spec(get_order_owner, "Get the user id of the owner of an order", order_id=INTEGER)),
]}


@dataclass(frozen=True)
class Task:
    question: str
    tools: tuple[str, ...]
    expected: str  # the value the final answer must hold
    steps: int  # tool calls the shortest solution makes


TASKS = [
    # one step
    Task("What is the weather in Paris?", ("get_weather", "get_capital"), "17", 1),
    Task("How warm is it in Tokyo right now?", ("get_weather", "celsius_to_fahrenheit"), "23", 1),
    Task("What is the temperature in Oslo?", ("get_weather",), "14", 1),
    Task("What is the capital of Egypt?", ("get_capital", "get_weather"), "Cairo", 1),
    Task("Convert 30 degrees Celsius to Fahrenheit.", ("celsius_to_fahrenheit", "get_weather"), "86", 1),
    Task("What is the exchange rate from USD to EUR?", ("get_exchange_rate", "multiply"), "0.92", 1),
    Task("What is 37 times 12?", ("multiply",), "444", 1),
    Task("What is the stock price of NVDA?", ("get_stock_price", "multiply"), "120", 1),
    Task("What is the user id of Carol?", ("find_user_id", "get_user_email"), "3011", 1),
    Task("What is the email address of user 2077?", ("get_user_email", "find_user_id"), "bob@example.com", 1),
    Task("Which user owns order 612? Give the user id.", ("get_order_owner", "get_user_email"), "1042", 1),
    # two steps: the second call needs the first one's result
    Task("What is the weather in London in degrees Fahrenheit?", ("get_weather", "celsius_to_fahrenheit"),
         "53.6", 2),
    Task("What is the weather in the capital of Spain?", ("get_capital", "get_weather"), "26", 2),
    Task("How many euros are 250 US dollars?", ("get_exchange_rate", "multiply"), "230", 2),
    Task("How much do 3 shares of MSFT cost in US dollars?", ("get_stock_price", "multiply"), "1230", 2),
    Task("What is the email address of Alice?", ("find_user_id", "get_user_email"), "alice@example.com", 2),
    Task("What is the user id of Carol's manager?", ("find_user_id", "get_manager_id"), "1042", 2),
    Task("What is the email address of the owner of order 551?", ("get_order_owner", "get_user_email"),
         "carol@example.com", 2),
    Task("How many Japanese yen are 20 US dollars?", ("get_exchange_rate", "multiply"), "3000", 2),
    Task("What is the temperature in Cairo in Fahrenheit?", ("get_weather", "celsius_to_fahrenheit"), "87.8", 2),
    # three steps
    Task("What is the weather in the capital of France, in degrees Fahrenheit?",
         ("get_capital", "get_weather", "celsius_to_fahrenheit"), "62.6", 3),
    Task("What is the email address of Carol's manager?", ("find_user_id", "get_manager_id", "get_user_email"),
         "alice@example.com", 3),
    Task("What is the email address of the manager of the owner of order 612?",
         ("get_order_owner", "get_manager_id", "get_user_email"), "bob@example.com", 3),
    Task("How much do 2 shares of AAPL cost in euros?", ("get_stock_price", "multiply", "get_exchange_rate"),
         "345", 3),
    Task("What is the temperature in the capital of Germany in Fahrenheit?",
         ("get_capital", "get_weather", "celsius_to_fahrenheit"), "51.8", 3),
]


def run_tool(name: str, arguments: str) -> str:
    """The fake tool's answer; a bad call gets an error text back, as an agent framework would send."""
    if name not in TOOLS:
        return f"Error: there is no tool named {name}."
    try:
        args = json.loads(arguments or "{}")
        return TOOLS[name][0](**args)
    except (ValueError, TypeError, AttributeError) as exc:
        return f"Error: {name} could not run with {arguments}: {exc}"


def holds_value(answer: str, expected: str) -> bool:
    """Whether ``answer`` states ``expected``: the same number (1,230 = 1230.0), else the text, case-blind."""
    try:
        want = float(expected)
    except ValueError:
        return expected.lower() in answer.lower()
    numbers = re.findall(r"-?\d+(?:\.\d+)?", re.sub(r"(?<=\d),(?=\d{3})", "", answer))
    return any(math.isclose(float(n), want, rel_tol=1e-4, abs_tol=1e-6) for n in numbers)


# ---------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    question: str
    expected: str
    steps: int
    turns: int = 0  # model requests
    calls: list[dict[str, Any]] = field(default_factory=list)
    repeated_calls: int = 0  # calls equal to an earlier call of the task (name + arguments as JSON values)
    answer: str | None = None
    finish_reason: str | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def finished(self) -> bool:
        """A text answer that ended by itself: a reply cut by max_tokens does not count."""
        return bool(self.answer and self.answer.strip()) and self.finish_reason == "stop"

    @property
    def truncated(self) -> bool:
        return bool(self.answer and self.answer.strip()) and self.finish_reason == "length"

    @property
    def correct(self) -> bool:
        return self.finished and holds_value(self.answer or "", self.expected)


def _canonical(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), sort_keys=True)
    except ValueError:
        return arguments


def run_task(client: Any, model: str, task: Task, max_turns: int, max_tokens: int, system: str = "") -> Outcome:
    """The openai SDK agent loop, written out: request, run the calls, send their results, repeat."""
    import openai

    out = Outcome(task.question, task.expected, task.steps)
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": task.question})
    tools = [TOOLS[name][1] for name in task.tools]
    seen: set[tuple[str, str]] = set()
    start = time.perf_counter()
    try:
        for _ in range(max_turns):
            response = client.chat.completions.create(model=model, messages=messages, tools=tools, tool_choice="auto",
                                                      temperature=0, seed=0, max_tokens=max_tokens)
            out.turns += 1
            choice = response.choices[0]
            message, out.finish_reason = choice.message, choice.finish_reason
            if not message.tool_calls:
                out.answer = message.content
                break
            # content "" rather than null or absent: llama_cpp.server fails on both (500: null is not a
            # string; its chatml-function-calling template reads the missing key).
            calls = [{"id": c.id, "type": "function", "function": {"name": c.function.name,
                                                                    "arguments": c.function.arguments}}
                     for c in message.tool_calls]
            messages.append({"role": "assistant", "content": message.content or "", "tool_calls": calls})
            for call in message.tool_calls:
                key = (call.function.name, _canonical(call.function.arguments))
                out.repeated_calls += key in seen
                seen.add(key)
                result = run_tool(call.function.name, call.function.arguments)
                out.calls.append({"name": call.function.name, "arguments": call.function.arguments, "result": result})
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    except openai.APIError as exc:
        out.error = f"{type(exc).__name__}: {exc}"[:500]
    out.seconds = time.perf_counter() - start
    return out


def duplicates_dropped(base_url: str) -> dict[str, float] | None:
    """The server's dropped-duplicate counter by label set (e.g. ``{reason="repeated"}``), or None where it has none."""
    try:
        with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return None
    series = {}
    for line in text.splitlines():
        if line.startswith(DUPLICATES_METRIC) and line[len(DUPLICATES_METRIC):][:1] in (" ", "{"):
            name, value = line.rsplit(" ", 1)
            series[name[len(DUPLICATES_METRIC):] or "total"] = float(value)
    return series or None


def run_server(label: str, base_url: str, tasks: list[Task], args: argparse.Namespace) -> dict[str, Any]:
    import openai

    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=args.timeout)
    model = client.models.list().data[0].id
    before = duplicates_dropped(base_url)
    outcomes = []
    for i, task in enumerate(tasks, 1):
        out = run_task(client, model, task, args.max_turns, args.max_tokens, args.system)
        outcomes.append(out)
        mark = "ok" if out.correct else "finished" if out.finished else "truncated" if out.truncated else "UNFINISHED"
        print(f"[{label}] {i}/{len(tasks)} {mark:10} turns={out.turns} {out.seconds:5.1f}s  {task.question}"
              f"  -> {(out.answer or out.error or '')[:100]!r}", file=sys.stderr, flush=True)
    after = duplicates_dropped(base_url)
    dropped = {k: v - (before or {}).get(k, 0.0) for k, v in after.items()} if after is not None else None
    return {
        "server": label, "model": model, "tasks": len(outcomes),
        "finished": sum(o.finished for o in outcomes),
        "truncated": sum(o.truncated for o in outcomes),
        "correct": sum(o.correct for o in outcomes),
        "errors": sum(o.error is not None for o in outcomes),
        "mean_turns": statistics.fmean(o.turns for o in outcomes) if outcomes else 0.0,
        "repeated_calls_seen": sum(o.repeated_calls for o in outcomes),
        "duplicate_calls_dropped": sum(dropped.values()) if dropped is not None else None,
        "duplicate_calls_dropped_by_label": dropped,
        "p50_seconds": statistics.median(o.seconds for o in outcomes) if outcomes else 0.0,
        "outcomes": [{**asdict(o), "finished": o.finished, "truncated": o.truncated, "correct": o.correct}
                     for o in outcomes],
    }


def table(results: list[dict[str, Any]]) -> str:
    def share(r: dict[str, Any], key: str) -> str:
        return f"{r[key]}/{r['tasks']} ({100 * r[key] / max(1, r['tasks']):.0f}%)"

    rows = [
        ("tasks finished (text answer, finish_reason stop, within the turn limit)", lambda r: share(r, "finished")),
        ("final answer holds the expected value", lambda r: share(r, "correct")),
        ("text cut by max_tokens instead of an answer", lambda r: str(r["truncated"])),
        ("requests that failed", lambda r: str(r["errors"])),
        ("mean model requests per task", lambda r: f"{r['mean_turns']:.2f}"),
        ("calls repeated to the client", lambda r: str(r["repeated_calls_seen"])),
        ("duplicate calls dropped by the server", lambda r: "n/a" if r["duplicate_calls_dropped"] is None
         else f"{r['duplicate_calls_dropped']:g}"),
        ("p50 time per task", lambda r: f"{r['p50_seconds']:.1f} s"),
    ]
    lines = ["| | " + " | ".join(r["server"] for r in results) + " |",
             "|---|" + "---:|" * len(results)]
    lines += [f"| {name} | " + " | ".join(cell(r) for r in results) + " |" for name, cell in rows]
    return "\n".join(lines)


@contextlib.contextmanager
def started(name: str, args: argparse.Namespace, gguf: str, log_dir: Path) -> Iterator[str]:
    """Start one server on a free port (same GGUF, context and threads for both); yield its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    if name == "hammer":
        cmd = [sys.executable, "-m", "hammer.cli", "serve", "--backend", "llama", "--port", str(port),
               "--n-ctx", str(args.n_ctx), "--n-threads", str(args.threads), *(["--model", gguf] if args.model else [])]
    else:
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--chat_format", "chatml-function-calling",
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(args.n_ctx),
               "--n_threads", str(args.threads), "--n_threads_batch", str(args.threads)]
    # /v1/models: llama_cpp.server has no /health.
    with running(cmd, f"{url}/v1/models", log_dir / f"{name}.log") as _:
        yield url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated, of: %(default)s")
    parser.add_argument("--limit", type=int, default=0, help="run only the first N tasks (default: all)")
    parser.add_argument("--max-turns", type=int, default=6, help="model requests per task (default: %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=256, help="per request (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=30, help="seconds per request (default: %(default)s)")
    parser.add_argument("--n-ctx", type=int, default=4096, help="context length of both servers")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                        help="llama.cpp threads of both servers (default: half the cores, llama_cpp.server's default)")
    # chatml-function-calling shows the model the tools only inside a system message: without one it
    # never learns they exist. Both servers get the same one; '' sends none.
    parser.add_argument("--system", default="You are a helpful assistant.",
                        help="system message of every task (default: %(default)r; '' for none)")
    parser.add_argument("--model", help="GGUF for both servers (default: the embedded SmolLM2-135M)")
    parser.add_argument("--out", default="runs/agent_tasks.json", help="JSON results (default: %(default)s)")
    args = parser.parse_args()
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    if unknown := set(names) - set(SERVERS):
        parser.error(f"unknown server(s) {sorted(unknown)}; choose from {', '.join(SERVERS)}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers when killed, too

    from hammer.server.settings import embedded_model_path

    gguf = args.model or str(embedded_model_path())
    tasks = TASKS[: args.limit] if args.limit else TASKS
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    log_dir = out.parent / (out.stem + "_logs")
    log_dir.mkdir(exist_ok=True)
    results = []
    started_at = time.perf_counter()
    with contextlib.ExitStack() as stack:
        urls = {name: stack.enter_context(started(name, args, gguf, log_dir)) for name in names}
        for name in names:  # one after the other: the servers share the CPU
            results.append(run_server(name, urls[name], tasks, args))
    report = {"model": gguf, "system": args.system, "threads": args.threads, "n_ctx": args.n_ctx,
              "max_turns": args.max_turns, "max_tokens": args.max_tokens,
              "seconds": round(time.perf_counter() - started_at, 1), "results": results}
    out.write_text(json.dumps(report, indent=2))
    print(table(results))
    print(f"\n{len(tasks)} tasks, max {args.max_turns} model requests each, {args.threads} threads; "
          f"details in {out}, server logs in {log_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
