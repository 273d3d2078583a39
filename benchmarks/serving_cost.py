"""What the server's own code costs per request, with the model taken out of the measurement.

    python benchmarks/serving_cost.py            # 300 requests per path
    python benchmarks/serving_cost.py -n 1000

Three servers in their own processes, each on uvicorn, measured one after the other with the
same HTTP client:

* **bare FastAPI** (baseline): one route that returns a fixed ``chat.completion``: HTTP, JSON
  parsing and uvicorn, nothing of ours.
* **hammer serve, tool call**: the whole request path (auth middleware, access log, metrics,
  validation, tool planning, Hammer prompt, output JSON Schema, admission queue, call parsing and
  schema validation, response) on a backend that answers instantly with a Hammer call.
* **hammer serve, plain chat**: the same without tools.

The difference from the baseline is the server's overhead per request; `server_overhead.py` shows
it against real llama.cpp generation, where run-to-run noise hides a few milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hammer.processes import free_port, running

CALL = '```\n[{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]\n```'
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "required": ["city"], "properties": {
        "city": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}}}}]
MESSAGES = [{"role": "user", "content": "What's the weather like in Paris?"}]

BARE_APP = """
import sys, uvicorn
from fastapi import FastAPI, Request
app = FastAPI()
@app.get("/v1/models")
async def models():
    return {"object": "list", "data": [{"id": "fake", "object": "model"}]}
@app.post("/v1/chat/completions")
async def chat(request: Request):
    await request.json()
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "fake",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
            "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}]}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""

HAMMER_APP = f"""
import sys, uvicorn
from hammer.server.app import create_app
from hammer.server.backends.fake import FakeBackend
from hammer.server.settings import Settings
settings = Settings(served_model_name="fake")
app = create_app(settings, FakeBackend(settings, replies=[{CALL!r}]))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def measure(url: str, body: dict, n: int) -> list[float]:
    import httpx

    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(20):  # warm-up: imports, first JSON Schema checks, connection
            client.post("/v1/chat/completions", json=body).raise_for_status()
        times = []
        for _ in range(n):
            start = time.perf_counter()
            client.post("/v1/chat/completions", json=body).raise_for_status()
            times.append(1000 * (time.perf_counter() - start))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="requests per path (default: %(default)s)")
    args = parser.parse_args()
    log_dir = Path(tempfile.gettempdir())
    tool_body = {"model": "fake", "messages": MESSAGES, "tools": TOOLS, "temperature": 0}
    chat_body = {"model": "fake", "messages": MESSAGES, "max_tokens": 16}
    rows = []
    for label, program, body in [("bare FastAPI (baseline)", BARE_APP, tool_body),
                                 ("hammer serve, tool call", HAMMER_APP, tool_body),
                                 ("hammer serve, plain chat", HAMMER_APP, chat_body)]:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with running([sys.executable, "-c", program, str(port)], f"{url}/v1/models", log_dir / "serving_cost.log"):
            rows.append((label, measure(url, body, args.n)))
    baseline = statistics.median(rows[0][1])
    print(f"{args.n} sequential requests per path, one client, instant backend")
    print("| path | p50 ms | p99 ms | p50 over baseline ms |\n|---|---|---|---|")
    for label, times in rows:
        p99 = sorted(times)[int(0.99 * (len(times) - 1))]
        print(f"| {label} | {statistics.median(times):.2f} | {p99:.2f} | {statistics.median(times) - baseline:+.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
