"""llama.cpp backend (llama-cpp-python): GGUF models, GBNF-constrained decoding, one generation at a time."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ctypes
import dataclasses
import functools
import json
import os
import threading
from typing import Any, AsyncIterator, Callable, Mapping, Sequence

import llama_cpp
import numpy as np
from hammer.server.backends.base import (
    Backend,
    Chunk,
    ConstraintRejected,
    GenerationRequest,
    ModelInfo,
    OutputConstraint,
    TokenLogprob,
)
from hammer.server.backends.special_text import fragments
from hammer.server.backends.stops import StopMatcher
from hammer.server.chat_template import render_chat_template
from hammer.server.errors import BackendUnavailable
from hammer.server.grammar import SchemaLimits, SchemaRejected, sequence_gbnf
from hammer.server.settings import Settings
from llama_cpp.llama_grammar import LlamaGrammar


def constraint_grammar(constraint: OutputConstraint, limits: SchemaLimits) -> str:
    """GBNF for ``prefix + JSON(schema) + suffix`` from our own converter (``hammer.server.grammar``), which
    escapes every literal and bounds every repetition: llama-cpp-python's Python converter does
    neither, and a quote or NUL in an enum crashed the process. Raises ``ConstraintRejected``.

    >>> g = constraint_grammar(OutputConstraint({"type": "string", "maxLength": 3}, "<", ">"), SchemaLimits())
    >>> g.splitlines()[0].startswith('root ::= "<"')
    True
    """
    # The list of calls wraps each tool's (already checked) schema in four more levels.
    limits = dataclasses.replace(limits, max_depth=limits.max_depth + 4)
    try:
        return _memoized_grammar(json.dumps([constraint.prefix, constraint.json_schema, constraint.suffix]), limits)
    except SchemaRejected as exc:
        raise ConstraintRejected(str(exc.message)) from None


@functools.lru_cache(maxsize=256)
def _memoized_grammar(key: str, limits: SchemaLimits) -> str:
    prefix, schema, suffix = json.loads(key)
    return sequence_gbnf(prefix, schema, suffix, limits)


def special_strings(llama: llama_cpp.Llama) -> frozenset[str]:
    """The texts ``tokenize(special=True)`` reads as single tokens: control, user-defined and unknown tokens."""
    vocab = llama._model.vocab
    kinds = (llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
             | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN)
    texts = (llama_cpp.llama_vocab_get_text(vocab, token).decode("utf-8", "replace")
             for token in range(llama_cpp.llama_vocab_n_tokens(vocab))
             if llama_cpp.llama_vocab_get_attr(vocab, token) & kinds)
    return frozenset(text for text in texts if text)


def logit_bias_processor(bias: tuple[tuple[int, float], ...]) -> llama_cpp.LogitsProcessorList | None:
    """OpenAI's ``logit_bias`` as a llama-cpp-python logits processor (None when there is none)."""
    if not bias:
        return None
    ids = np.array([token for token, _ in bias], dtype=np.intc)
    values = np.array([value for _, value in bias], dtype=np.single)

    def add_bias(_: Any, scores: np.ndarray) -> np.ndarray:
        scores[ids] += values
        return scores

    return llama_cpp.LogitsProcessorList([add_bias])


def token_logprob(llama: llama_cpp.Llama, token: int, top: int) -> TokenLogprob:
    """The just-sampled ``token``'s logprob under the model's distribution (before the grammar, the
    penalties and the bias; as OpenAI reports), from the logits still in the context."""
    vocab_size = llama_cpp.llama_vocab_n_tokens(llama._model.vocab)
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llama._ctx.ctx, -1), shape=(vocab_size,))
    peak = float(logits.max())
    logprobs = logits - (peak + float(np.log(np.exp(logits - peak).sum())))

    def described(t: int) -> tuple[str, float, tuple[int, ...]]:
        raw = llama.detokenize([t])
        return raw.decode("utf-8", "replace"), float(logprobs[t]), tuple(raw)

    best = np.argpartition(-logprobs, top)[:top] if top else np.array([], dtype=int)
    alternatives = sorted((described(int(t)) for t in best), key=lambda d: -d[1])
    text, logprob, raw = described(token)
    return TokenLogprob(text, logprob, raw, tuple(alternatives))


# GGUF keys llama.cpp's converter writes from a model's generation_config.json.
_SAMPLING_KEYS = {"general.sampling.temp": "temperature", "general.sampling.top_p": "top_p"}


def recommended_sampling(metadata: Mapping[str, str]) -> dict[str, float]:
    """The sampling a GGUF recommends, as request fields.

    >>> recommended_sampling({"general.sampling.temp": "0.7", "general.name": "x"})
    {'temperature': 0.7}
    """
    found = {}
    for key, field in _SAMPLING_KEYS.items():
        try:
            found[field] = float(metadata[key])
        except (KeyError, ValueError):
            continue
    return found


def longest_token(llama: llama_cpp.Llama) -> int:
    """Bytes of the vocab's longest token piece (an upper bound on the characters it decodes to)."""
    vocab, buffer = llama._model.vocab, ctypes.create_string_buffer(1024)
    return max(llama_cpp.llama_token_to_piece(vocab, token, buffer, len(buffer), 0, True)
               for token in range(llama_cpp.llama_vocab_n_tokens(vocab)))


class LlamaCppBackend(Backend):
    max_concurrency = 1

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._llama: llama_cpp.Llama | None = None
        # Held while a decoding thread runs, released by that thread when it ends: the next
        # generation waits for it even if the previous client left and its task was cancelled.
        self._idle = asyncio.Lock()
        # Stop flags of running generations, so shutdown need not wait for a long one to finish.
        self._running: set[threading.Event] = set()
        # Texts of the vocab's special tokens: parsed as tokens only where the template wrote them.
        self._specials: frozenset[str] = frozenset()

    async def start(self) -> ModelInfo:
        path = self._settings.model_path()
        if not os.path.isfile(path):
            raise BackendUnavailable(f"model file not found: {path} (--model expects a .gguf file)")
        threads = self._settings.n_threads or max(1, (os.cpu_count() or 2) // 2)
        try:
            self._llama = await asyncio.to_thread(
                llama_cpp.Llama, model_path=path, n_ctx=self._settings.n_ctx,
                n_threads=threads, n_threads_batch=threads, n_gpu_layers=self._settings.n_gpu_layers,
                flash_attn=self._settings.flash_attn, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise BackendUnavailable(f"llama.cpp could not load {path}: {exc}") from exc
        self._specials = special_strings(self._llama)
        return ModelInfo(self._settings.model_name(), self._llama.n_ctx(), {"path": path},
                         max_token_chars=longest_token(self._llama),
                         vocab_size=llama_cpp.llama_vocab_n_tokens(self._llama._model.vocab),
                         sampling=recommended_sampling(self._llama.metadata))

    async def close(self) -> None:
        if self._llama is not None:
            for cancelled in self._running:
                cancelled.set()
            async with self._idle:
                self._llama.close()
            self._llama = None

    @property
    def llama(self) -> llama_cpp.Llama:
        if self._llama is None:
            raise BackendUnavailable("the model is not loaded")
        return self._llama

    def tokenize(self, prompt: str, plain_texts: Sequence[str] = ()) -> list[int]:
        """Prompt tokens: the template's markers as special tokens, ``plain_texts`` (client text) as plain text."""
        llama = self.llama
        tokens: list[int] = []
        for i, (text, special) in enumerate(fragments(prompt, plain_texts, self._specials)):
            tokens += llama.tokenize(text.encode("utf-8"), add_bos=i == 0, special=special)
        return tokens

    def count_tokens(self, prompt: str, plain_texts: Sequence[str] = ()) -> int:
        return len(self.tokenize(prompt, plain_texts))

    def chat_prompt(self, messages: Sequence[Mapping[str, Any]]) -> str:
        llama = self.llama
        metadata = llama.metadata
        token = lambda key: (  # noqa: E731
            llama.detokenize([int(metadata[key])], special=True).decode("utf-8", "replace")
            if key in metadata else "")
        prompt = render_chat_template(metadata.get("tokenizer.chat_template"), messages,
                                      token("tokenizer.ggml.bos_token_id"), token("tokenizer.ggml.eos_token_id"))
        # The template writes BOS itself; tokenize() adds it again where the vocab asks for it.
        bos = token("tokenizer.ggml.bos_token_id")
        return prompt[len(bos):] if bos and prompt.startswith(bos) and llama._model.add_bos_token() else prompt

    def chat_template_source(self) -> str | None:
        return self.llama.metadata.get("tokenizer.chat_template")

    def check(self, request: GenerationRequest) -> None:
        if request.constraint is not None:
            self._grammar(request.constraint)

    def _grammar(self, constraint: OutputConstraint) -> str:
        """The constraint's grammar, parsed once by llama.cpp itself: a grammar it rejects would be a
        NULL sampler in the chain (a crash) in the decoding thread."""
        grammar = constraint_grammar(constraint, self._settings.schema_limits())
        if not self._parses(grammar):
            raise ConstraintRejected("llama.cpp could not parse the grammar built from the schema")
        return grammar

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one backend per process; keyed by grammar text
    def _parses(self, grammar: str) -> bool:
        sampler = llama_cpp.llama_sampler_init_grammar(self.llama._model.vocab, grammar.encode("utf-8"), b"root")
        if not sampler:
            return False
        llama_cpp.llama_sampler_free(sampler)
        return True

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Chunk | BaseException] = asyncio.Queue()
        cancelled = threading.Event()

        def put(item: Chunk | BaseException) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                self._decode(request, cancelled, put)
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is gone at interpreter exit
                    loop.call_soon_threadsafe(self._idle.release)

        await self._idle.acquire()
        self._running.add(cancelled)
        try:
            threading.Thread(target=work, daemon=True).start()
        except BaseException:
            self._running.discard(cancelled)
            self._idle.release()
            raise
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BackendUnavailable):
                    raise item
                if isinstance(item, BaseException):
                    raise BackendUnavailable(f"llama.cpp generation failed: {item}") from item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            cancelled.set()  # the thread stops at its next token and then releases the model
            self._running.discard(cancelled)

    def _decode(self, request: GenerationRequest, cancelled: threading.Event,
                put: Callable[[Chunk | BaseException], None]) -> None:
        """Runs in a worker thread: sample tokens, hand text to the event loop."""
        try:
            llama = self.llama
            params = request.params
            grammar = LlamaGrammar.from_string(self._grammar(request.constraint), verbose=False) \
                if request.constraint else None
            # generate() seeds the sampler it builds from this; LLAMA_DEFAULT_SEED (2**32 - 1) draws a
            # fresh seed, so a request without one never reuses an earlier request's.
            llama.set_seed(llama_cpp.LLAMA_DEFAULT_SEED if params.seed is None
                           else params.seed % llama_cpp.LLAMA_DEFAULT_SEED)
            tokens = self.tokenize(request.prompt, request.plain_texts)
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            stops = StopMatcher(params.stop)
            generated: list[int] = []
            logprobs: list[TokenLogprob] = []  # of tokens whose text is not sent yet
            finish = "length"
            for token in llama.generate(tokens, temp=params.temperature, top_p=params.top_p,
                                        top_k=0 if params.temperature > 0 else 1, min_p=0.0,
                                        repeat_penalty=params.repeat_penalty,
                                        frequency_penalty=params.frequency_penalty,
                                        presence_penalty=params.presence_penalty,
                                        logits_processor=logit_bias_processor(params.logit_bias),
                                        grammar=grammar, reset=True):
                if cancelled.is_set():  # client gone (nobody reads this) or server shutting down
                    put(BackendUnavailable("generation stopped: the server is shutting down"))
                    return
                if llama_cpp.llama_token_is_eog(llama._model.vocab, token):
                    finish = "stop"
                    break
                if params.logprobs is not None:
                    logprobs.append(token_logprob(llama, token, params.logprobs))
                piece = decoder.decode(llama.detokenize([token], prev_tokens=tokens + generated))
                generated.append(token)
                text = stops.feed(piece)
                if stops.stopped:
                    put(Chunk(text, "stop", len(generated), tuple(logprobs)))
                    return
                if text:
                    put(Chunk(text, logprobs=tuple(logprobs)))
                    logprobs = []
                if len(generated) >= params.max_tokens:
                    break
            put(Chunk(stops.feed(decoder.decode(b"", final=True)) + stops.flush(), finish, len(generated),
                      tuple(logprobs)))
        except BaseException as exc:  # noqa: BLE001 - reported to the awaiting request (503)
            if self._llama is not None:
                self._llama.reset()  # forget the cached tokens: the next request evaluates its prompt afresh
            put(exc)

