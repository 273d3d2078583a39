"""The checks emulate.sh runs: one tool-call request's exact prompt tokens and grammar, greedy
decoding of them with whichever llama.cpp build ``llama_cpp`` loads, and an openai SDK client
for a served tool call and a refusal.

    python emulate_check.py prepare DIR                 # x86-64, with the server installed
    python emulate_check.py greedy DIR --model M.gguf   # any arch, needs only llama_cpp
    python emulate_check.py compare A.json B.json ...   # same generated tokens, or exit 1
    python emulate_check.py client URL                  # the served tool call and refusal

``prepare`` goes through the serving layer's own code (``convert``: tool plan, Hammer prompt,
output constraint; the llama.cpp backend's grammar and tokenizer), so the tokens and grammar
are the ones ``hammer serve`` would decode with. ``greedy`` decodes them through
llama-cpp-python's ``Llama.generate`` (llama.cpp's grammar sampler, then argmax), which needs
nothing of the server: the comparison is of the llama.cpp builds, and the server's own engine
is what ``client`` exercises on arm64.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
EMAIL = {
    "type": "function",
    "function": {
        "name": "send_email",
        "description": "Send an email to a recipient",
        "parameters": {
            "type": "object",
            "properties": {
                "to": {"type": "string", "description": "email address"},
                "subject": {"type": "string"},
                "body": {"type": "string"},
            },
            "required": ["to", "subject", "body"],
        },
    },
}
TOOLS = [WEATHER, EMAIL]
# The embedded SmolLM2-135M Q4_1 answers the first with a get_weather call and the second with
# "[]" (the same queries tests/server/test_e2e.py relies on).
CALL_QUERY = "What's the weather like in Paris?"
REFUSAL_QUERY = "Who wrote Hamlet?"
N_CTX = 2048
MAX_TOKENS = 64


def request_body(query: str) -> dict[str, Any]:
    return {"model": "hammer", "messages": [{"role": "user", "content": query}], "tools": TOOLS,
            "tool_choice": "auto", "temperature": 0, "seed": 0}


def prepare(out: Path) -> None:
    import asyncio

    from hammer.server.backends.llamacpp import LlamaCppBackend, constraint_grammar
    from hammer.server.convert import convert
    from hammer.server.protocol import ChatCompletionRequest
    from hammer.server.settings import Settings

    settings = Settings(n_ctx=N_CTX)
    backend = LlamaCppBackend(settings)
    asyncio.run(backend.start())
    converted = convert(ChatCompletionRequest.model_validate(request_body(CALL_QUERY)), settings, backend.chat_prompt)
    assert converted.constraint is not None, "a request with tools has an output constraint"
    out.mkdir(parents=True, exist_ok=True)
    (out / "prompt.txt").write_text(converted.prompt)
    (out / "grammar.gbnf").write_text(constraint_grammar(converted.constraint, settings.schema_limits()))
    (out / "prompt_tokens.json").write_text(json.dumps(backend.tokenize(converted.prompt, converted.plain_texts)))
    (out / "model_path").write_text(settings.model_path())
    print(f"prepared {out}: {len(converted.prompt)} prompt characters, model {settings.model_path()}")


def greedy(case: Path, model: str, out: Path, threads: int) -> None:
    import llama_cpp
    from llama_cpp.llama_grammar import LlamaGrammar

    tokens = json.loads((case / "prompt_tokens.json").read_text())
    llama = llama_cpp.Llama(model_path=model, n_ctx=N_CTX, n_threads=threads, n_threads_batch=threads,
                            seed=0, verbose=False)
    grammar = LlamaGrammar.from_string((case / "grammar.gbnf").read_text(), verbose=False)
    started = time.monotonic()
    generated: list[int] = []
    # Temperature 0 with no penalties or bias: grammar, then the most likely token.
    for token in llama.generate(tokens, temp=0.0, top_p=1.0, top_k=1, min_p=0.0, repeat_penalty=1.0,
                                frequency_penalty=0.0, presence_penalty=0.0, grammar=grammar, reset=True):
        if llama_cpp.llama_token_is_eog(llama._model.vocab, token):
            break
        generated.append(token)
        if len(generated) >= MAX_TOKENS:
            break
    seconds = time.monotonic() - started
    text = llama.detokenize(generated).decode("utf-8", "replace")
    result = {"machine": platform.machine(), "system_info": llama_cpp.llama_print_system_info().decode(),
              "prompt_tokens": len(tokens), "tokens": generated, "text": text, "seconds": round(seconds, 1)}
    out.write_text(json.dumps(result, indent=1))
    print(f"{platform.machine()}: {len(generated)} tokens in {seconds:.1f}s: {text!r}")


def compare(paths: list[Path]) -> int:
    results = [(p, json.loads(p.read_text())) for p in paths]
    reference_path, reference = results[0]
    if not reference["tokens"]:
        print(f"FAIL: {reference_path} generated no tokens")
        return 1
    failed = 0
    for path, result in results[1:]:
        same = result["tokens"] == reference["tokens"]
        failed += not same
        print(f"{'same' if same else 'DIFFERENT'}: {path.name} ({result['machine']}) vs {reference_path.name} "
              f"({reference['machine']}): {len(result['tokens'])} vs {len(reference['tokens'])} tokens")
        if not same:
            print(f"  {reference['tokens']}\n  {result['tokens']}\n  {result['text']!r}")
    return 1 if failed else 0


def client(url: str) -> int:
    import jsonschema
    import openai

    api = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=1800)
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    failures = []
    for query, want_call in ((CALL_QUERY, True), (REFUSAL_QUERY, False)):
        body = request_body(query)
        started = time.monotonic()
        choice = api.chat.completions.create(model=api.models.list().data[0].id, messages=body["messages"],
                                             tools=body["tools"], tool_choice="auto", temperature=0, seed=0).choices[0]
        print(f"{query!r} ({time.monotonic() - started:.0f}s): finish_reason={choice.finish_reason} "
              f"content={choice.message.content!r}")
        calls = choice.message.tool_calls or []
        for call in calls:
            print(f"  tool call: {call.function.name}({call.function.arguments})")
            jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])
            print("  arguments valid against the tool's JSON Schema")
        if want_call and (choice.finish_reason != "tool_calls" or not calls):
            failures.append(f"{query!r}: expected a tool call")
        if not want_call and (choice.finish_reason != "stop" or calls or not choice.message.content):
            failures.append(f"{query!r}: expected a refusal")
    for failure in failures:
        print(f"FAIL: {failure}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare").add_argument("dir", type=Path)
    g = sub.add_parser("greedy")
    g.add_argument("dir", type=Path)
    g.add_argument("--model", required=True)
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--threads", type=int, default=2)
    sub.add_parser("compare").add_argument("results", type=Path, nargs="+")
    sub.add_parser("client").add_argument("url")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare(args.dir)
    elif args.command == "greedy":
        greedy(args.dir, args.model, args.out, args.threads)
    elif args.command == "compare":
        return compare(args.results)
    else:
        return client(args.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
