"""llama.cpp backend (llama-cpp-python): GGUF models, GBNF-constrained decoding, one generation at a time."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import os
import re
import threading
from typing import Any, AsyncIterator, Callable, Mapping, Sequence

import llama_cpp
from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

from server.backends.base import Backend, Chunk, GenerationRequest, ModelInfo
from server.backends.stops import StopMatcher
from server.chat_template import render_chat_template
from server.constraints import OutputConstraint
from server.errors import BackendUnavailable
from server.settings import Settings


# llama-cpp-python's converter lets raw control characters into strings (invalid JSON).
_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_STRICT_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'
# ...and spells ``maxLength: n`` as n nested optionals, which llama.cpp cannot parse for large n.
_NESTED_CHARS = re.compile(r"(?:\(char )*\(char\)\?(?:\)\?)*")


def constraint_grammar(constraint: OutputConstraint) -> str:
    """GBNF for ``prefix + JSON(schema) + suffix``, from llama.cpp's own schema converter.

    >>> g = constraint_grammar(OutputConstraint({"type": "string", "maxLength": 3}, "<", ">"))
    >>> print(g.splitlines()[0]); "char{0,3}" in g, "x7F" in g  # control characters excluded
    root ::= "<" json-value ">"
    (True, True)
    """
    gbnf = json_schema_to_gbnf(json.dumps(constraint.json_schema))
    gbnf = gbnf.replace(_LOOSE_CHAR, _STRICT_CHAR)
    gbnf = _NESTED_CHARS.sub(lambda m: f"char{{0,{m.group(0).count('char')}}}", gbnf)
    body = gbnf.replace("root ::=", "json-value ::=", 1)
    literal = lambda s: json.dumps(s)  # GBNF string literals use JSON escapes  # noqa: E731
    return f"root ::= {literal(constraint.prefix)} json-value {literal(constraint.suffix)}\n{body}"


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
        return ModelInfo(self._settings.model_name(), self._llama.n_ctx(), {"path": path})

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

    def tokenize(self, prompt: str) -> list[int]:
        return self.llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)

    def count_tokens(self, prompt: str) -> int:
        return len(self.tokenize(prompt))

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
            grammar = LlamaGrammar.from_string(constraint_grammar(request.constraint), verbose=False) \
                if request.constraint else None
            if params.seed is not None:
                llama.set_seed(params.seed)
            tokens = self.tokenize(request.prompt)
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            stops = StopMatcher(params.stop)
            generated: list[int] = []
            finish = "length"
            for token in llama.generate(tokens, temp=params.temperature, top_p=params.top_p,
                                        top_k=0 if params.temperature > 0 else 1, min_p=0.0,
                                        repeat_penalty=1.0, grammar=grammar, reset=True):
                if cancelled.is_set():  # client gone (nobody reads this) or server shutting down
                    put(BackendUnavailable("generation stopped: the server is shutting down"))
                    return
                if llama_cpp.llama_token_is_eog(llama._model.vocab, token):
                    finish = "stop"
                    break
                piece = decoder.decode(llama.detokenize([token], prev_tokens=tokens + generated))
                generated.append(token)
                text = stops.feed(piece)
                if stops.stopped:
                    put(Chunk(text, "stop", len(generated)))
                    return
                if text:
                    put(Chunk(text))
                if len(generated) >= params.max_tokens:
                    break
            put(Chunk(stops.feed(decoder.decode(b"", final=True)) + stops.flush(), finish, len(generated)))
        except BaseException as exc:  # noqa: BLE001 - reported to the awaiting request (503)
            if self._llama is not None:
                self._llama.reset()  # forget the cached tokens: the next request evaluates its prompt afresh
            put(exc)

