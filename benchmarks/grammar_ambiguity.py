"""Why a pattern may hold at most 8 variable-length quantifiers: llama.cpp's grammar engine slows
down with each one, on the embedded model, while the generation slot is held.

For k adjacent ``[a-z]*`` in a ``pattern`` (the grammar built with the limit lifted), it prints
the seconds llama.cpp takes for a short prompt and 7 tokens at temperature 0, next to k = 1 as the baseline, and
whether the server's default limits accept the pattern.

    python benchmarks/grammar_ambiguity.py [--counts 1,8,16,20,24]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import llama_cpp
from hammer.server.backends.base import OutputConstraint
from hammer.server.backends.llamacpp import constraint_grammar
from hammer.server.grammar import SchemaLimits, SchemaRejected, check_pattern
from hammer.server.settings import embedded_model_path

PROMPT = b"<|im_start|>user\nWrite a word<|im_end|>\n<|im_start|>assistant\n"


def seconds_for_tokens(llm: llama_cpp.Llama, grammar: str, tokens: int = 7) -> float:
    prompt = llm.tokenize(PROMPT, special=True)  # a dozen tokens: their evaluation is in the baseline too
    started = time.perf_counter()
    for i, _ in enumerate(llm.generate(prompt, temp=0, top_k=1, reset=True,
                                       grammar=llama_cpp.LlamaGrammar.from_string(grammar, verbose=False))):
        if i + 1 >= tokens:
            break
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,8,16,20,24", help="numbers of [a-z]* to chain (default: %(default)s)")
    args = parser.parse_args()
    llm = llama_cpp.Llama(model_path=str(embedded_model_path()), n_ctx=512, n_threads=1, verbose=False)
    lifted = dataclasses.replace(SchemaLimits(), max_variable_repeats=1000)
    print("| [a-z]* in the pattern | s for 7 tokens | accepted by the default limits |\n|---|---|---|")
    for k in map(int, args.counts.split(",")):
        pattern = "^" + "[a-z]*" * k + "$"
        try:
            check_pattern(pattern)
            accepted = "yes"
        except SchemaRejected:
            accepted = "no (400)"
        grammar = constraint_grammar(OutputConstraint({"type": "string", "pattern": pattern}), lifted)
        print(f"| {k} | {seconds_for_tokens(llm, grammar):.2f} | {accepted} |", flush=True)


if __name__ == "__main__":
    main()
