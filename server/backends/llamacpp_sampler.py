"""One generation's sampling on llama.cpp's sampler API: logit bias, penalties, grammar, then greedy or
top-p/temperature with the request's seed; logprobs from the raw logits row.

Built off the engine thread (parsing a large grammar takes milliseconds), used by it alone.
"""

from __future__ import annotations

import ctypes
import math

import llama_cpp
import numpy as np
from hammer.server.backends.base import SamplingParams, TokenLogprob

#: Tokens the repeat/frequency/presence penalties look back over (llama-cpp-python's default).
PENALTY_LAST_N = 64

#: Greedy decoding under a grammar looks for an allowed token among this many most likely ones, then
#: among the next size's, before it masks the whole vocabulary: the first token of a call list (the
#: fence) is rarely among the 32 most likely, and masking 49k tokens took 3 ms of every request.
SHORTLISTS = (32, 1024)

_TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)


class Vocab:
    """The model's vocabulary as the engine needs it: token pieces (cached) and end-of-generation ids."""

    def __init__(self, vocab: llama_cpp.llama_vocab_p) -> None:
        self.handle = vocab
        self.size = llama_cpp.llama_vocab_n_tokens(vocab)
        self._pieces: dict[int, bytes] = {}
        self._buffer = ctypes.create_string_buffer(256)

    def piece(self, token: int) -> bytes:
        """The bytes ``token`` stands for in generated text (special tokens: none)."""
        found = self._pieces.get(token)
        if found is None:
            n = llama_cpp.llama_token_to_piece(self.handle, token, self._buffer, len(self._buffer), 0, False)
            found = self._pieces[token] = self._buffer.raw[:max(n, 0)]
        return found

    def is_end(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.handle, token))


class SequenceSampler:
    """Owns its llama.cpp samplers; ``free`` releases them (the engine calls it when the sequence ends)."""

    def __init__(self, vocab: Vocab, params: SamplingParams, grammar: str | None) -> None:
        self._vocab = vocab
        self._logprobs = params.logprobs
        self._greedy = params.temperature <= 0
        # Before the grammar: bias and penalties change which token wins.
        self._pre = _chain()
        if params.logit_bias:
            bias = (llama_cpp.llama_logit_bias * len(params.logit_bias))(
                *(llama_cpp.llama_logit_bias(token, value) for token, value in params.logit_bias))
            _add(self._pre, llama_cpp.llama_sampler_init_logit_bias(vocab.size, len(params.logit_bias), bias))
        penalized = params.repeat_penalty != 1.0 or params.frequency_penalty != 0.0 or params.presence_penalty != 0.0
        if penalized:
            _add(self._pre, llama_cpp.llama_sampler_init_penalties(
                vocab.size, PENALTY_LAST_N, params.repeat_penalty, params.frequency_penalty, params.presence_penalty))
        # Greedy on the raw logits (a tool call at temperature 0): the argmax needs no candidate array.
        self._plain_argmax = params.temperature <= 0 and not params.logit_bias and not penalized
        self._grammar = None
        if grammar is not None:
            self._grammar = llama_cpp.llama_sampler_init_grammar(vocab.handle, grammar.encode("utf-8"), b"root")
            if not self._grammar:  # the backend's check() parsed it already: a NULL here is a bug, not input
                self.free()
                raise RuntimeError("llama.cpp could not parse the request's grammar")
        self._post = _chain()
        if self._greedy:
            _add(self._post, llama_cpp.llama_sampler_init_greedy())
        else:
            seed = llama_cpp.LLAMA_DEFAULT_SEED if params.seed is None else params.seed % llama_cpp.LLAMA_DEFAULT_SEED
            _add(self._post, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
            _add(self._post, llama_cpp.llama_sampler_init_temp(params.temperature))
            _add(self._post, llama_cpp.llama_sampler_init_dist(seed))
        # Candidates for the whole vocabulary, refilled from the logits row at each step.
        self._data = np.zeros(vocab.size, dtype=_TOKEN_DATA)
        self._ids = np.arange(vocab.size, dtype=np.intc)
        self._candidates = llama_cpp.llama_token_data_array(
            self._data.ctypes.data_as(llama_cpp.llama_token_data_p), vocab.size, -1, False)
        self._few = np.zeros(max(SHORTLISTS, default=1), dtype=_TOKEN_DATA)
        self._shortlist = llama_cpp.llama_token_data_array(
            self._few.ctypes.data_as(llama_cpp.llama_token_data_p), len(self._few), -1, False)
        self._one = np.zeros(1, dtype=_TOKEN_DATA)
        self._single = llama_cpp.llama_token_data_array(
            self._one.ctypes.data_as(llama_cpp.llama_token_data_p), 1, -1, False)

    def sample(self, logits: np.ndarray) -> tuple[int, TokenLogprob | None]:
        """The next token from this step's logits row (and its logprobs, if asked), accepted into
        the penalties' history and the grammar's state."""
        if self._greedy and self._grammar is not None:
            # llama-server's shortcut, exact for greedy: the best token is usually one the grammar
            # allows; checking that one token is far cheaper than masking the whole vocabulary.
            token = int(logits.argmax()) if self._plain_argmax else self._pick(logits, grammar=False)
            if not self._allows(token):
                shortlisted = self._best_allowed(logits) if self._plain_argmax else None
                token = self._pick(logits, grammar=True) if shortlisted is None else shortlisted
        elif self._plain_argmax:
            token = int(logits.argmax())
        else:
            token = self._pick(logits, grammar=self._grammar is not None)
        llama_cpp.llama_sampler_accept(self._pre, token)
        if self._grammar is not None:
            llama_cpp.llama_sampler_accept(self._grammar, token)
        llama_cpp.llama_sampler_accept(self._post, token)
        return token, (self._describe(logits, token) if self._logprobs is not None else None)

    def free(self) -> None:
        for sampler in (self._pre, self._grammar, getattr(self, "_post", None)):
            if sampler:
                llama_cpp.llama_sampler_free(sampler)
        self._pre = self._grammar = self._post = None

    def _pick(self, logits: np.ndarray, grammar: bool) -> int:
        data, candidates = self._data, self._candidates
        data["id"] = self._ids
        data["logit"] = logits
        candidates.size, candidates.selected, candidates.sorted = len(data), -1, False
        pointer = ctypes.byref(candidates)
        llama_cpp.llama_sampler_apply(self._pre, pointer)
        if grammar:
            llama_cpp.llama_sampler_apply(self._grammar, pointer)
        llama_cpp.llama_sampler_apply(self._post, pointer)
        return int(data["id"][candidates.selected])

    def _best_allowed(self, logits: np.ndarray) -> int | None:
        """The most likely token the grammar allows among the ``SHORTLISTS`` most likely (None if it
        allows none of them): the same token as masking the whole vocabulary, at a fraction of the cost."""
        for size in SHORTLISTS:
            if size >= len(logits):
                return None
            cutoff = logits[np.argpartition(logits, -size)[-size]]
            top = np.flatnonzero(logits >= cutoff)  # every token tied at the cutoff too: none is left out
            if len(top) > len(self._few):
                continue
            size = len(top)
            ranked = top[np.lexsort((top, -logits[top]))]  # as llama.cpp's greedy: highest logit, lowest id
            few = self._few[:size]
            few["id"] = ranked
            few["logit"] = logits[ranked]
            self._shortlist.size, self._shortlist.selected, self._shortlist.sorted = size, -1, False
            llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(self._shortlist))
            allowed = np.flatnonzero(~np.isinf(few["logit"]))
            if len(allowed):
                return int(ranked[allowed[0]])
        return None

    def _allows(self, token: int) -> bool:
        self._one[0] = (token, 1.0, 0.0)
        self._single.size, self._single.selected, self._single.sorted = 1, -1, False
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(self._single))
        return not math.isinf(float(self._one["logit"][0]))

    def _describe(self, logits: np.ndarray, token: int) -> TokenLogprob:
        """The token's logprob under the model's distribution (before bias, penalties and grammar, as
        OpenAI reports it) and the ``logprobs`` most likely alternatives."""
        peak = float(logits.max())
        logprobs = logits - (peak + float(np.log(np.exp(logits - peak).sum())))
        top = self._logprobs or 0

        def described(t: int) -> tuple[str, float, tuple[int, ...]]:
            raw = self._vocab.piece(t)
            return raw.decode("utf-8", "replace"), float(logprobs[t]), tuple(raw)

        best = np.argpartition(-logprobs, top)[:top] if top else np.array([], dtype=int)
        alternatives = sorted((described(int(t)) for t in best), key=lambda d: -d[1])
        text, logprob, raw = described(token)
        return TokenLogprob(text, logprob, raw, tuple(alternatives))


def _chain() -> llama_cpp.llama_sampler_p:
    return llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())


def _add(chain: llama_cpp.llama_sampler_p, sampler: llama_cpp.llama_sampler_p) -> None:
    llama_cpp.llama_sampler_chain_add(chain, sampler)
