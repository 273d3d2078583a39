"""Child process: hand grammars to the real llama.cpp grammar engine, one JSON line each.

Run as a script. Reads ``{"grammar": str, "walks": int, "max_tokens": int, "seed": int}``
lines on stdin and answers ``{"parsed": bool, "walks": [{"text": str, "finished": bool,
"stuck": bool}]}`` lines on stdout. A grammar that crashes llama.cpp kills this process,
not the test runner, which restarts it and reports the grammar.

A walk samples without a model: random logits over the whole vocabulary, biased toward
short tokens, closing punctuation and end-of-generation so that walks end; the grammar
sampler masks what the grammar forbids, the best allowed token is accepted.
"""

from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import llama_cpp  # noqa: E402
from hammer.server.settings import embedded_model_path  # noqa: E402

_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class Engine:
    def __init__(self) -> None:
        self.model = llama_cpp.Llama(model_path=str(embedded_model_path()), vocab_only=True, verbose=False)
        self.vocab = self.model._model.vocab
        self.size = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.pieces = [self.piece(t) for t in range(self.size)]
        self.eog = np.array([bool(llama_cpp.llama_vocab_is_eog(self.vocab, t)) for t in range(self.size)])
        lengths = np.array([max(len(p), 1) for p in self.pieces], dtype=np.float32)
        closers = np.array([p.strip() in (b'"', b"]", b"}", b"```", b",") for p in self.pieces])
        # Short tokens and closers first, end of generation as soon as the grammar allows it.
        self.bias = -1.5 * lengths + 5.0 * closers + 100.0 * self.eog
        self.data = np.zeros(self.size, dtype=_TOKEN_DATA)

    def piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, 64, 0, False)
        return buf.raw[:max(n, 0)]

    def handle(self, request: dict) -> dict:
        grammar = request["grammar"].encode("utf-8")
        sampler = llama_cpp.llama_sampler_init_grammar(self.vocab, grammar, b"root")
        if not sampler:
            return {"parsed": False, "walks": []}
        llama_cpp.llama_sampler_free(sampler)
        rng = np.random.default_rng(request.get("seed", 0))
        walks = [self.walk(grammar, rng, request.get("max_tokens", 200)) for _ in range(request.get("walks", 0))]
        return {"parsed": True, "walks": walks}

    def walk(self, grammar: bytes, rng: np.random.Generator, max_tokens: int) -> dict:
        sampler = llama_cpp.llama_sampler_init_grammar(self.vocab, grammar, b"root")
        out = bytearray()
        finished = stuck = False
        try:
            for _ in range(max_tokens):
                self.data["id"] = np.arange(self.size, dtype=np.int32)
                self.data["logit"] = self.bias + rng.gumbel(size=self.size).astype(np.float32) * 2.0
                self.data["p"] = 0.0
                array = llama_cpp.llama_token_data_array(
                    data=self.data.ctypes.data_as(llama_cpp.llama_token_data_p), size=self.size, selected=-1,
                    sorted=False)
                llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
                logits = np.ctypeslib.as_array(array.data, shape=(array.size,))["logit"]
                best = int(np.argmax(logits))
                if not np.isfinite(logits[best]):
                    stuck = True
                    break
                token = int(np.ctypeslib.as_array(array.data, shape=(array.size,))["id"][best])
                if self.eog[token]:
                    finished = True
                    break
                llama_cpp.llama_sampler_accept(sampler, token)
                out += self.pieces[token]
        finally:
            llama_cpp.llama_sampler_free(sampler)
        return {"text": out.decode("utf-8", errors="replace"), "finished": finished, "stuck": stuck}


def main() -> None:
    engine = Engine()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        print(json.dumps(engine.handle(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
