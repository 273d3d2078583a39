"""llama.cpp backend (llama-cpp-python): GGUF models, GBNF-constrained decoding, ``--parallel`` generations
batched together with a prefix cache (``llamacpp_engine``)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import functools
import json
import logging
import os
from typing import Any, AsyncIterator, Mapping, Sequence

import llama_cpp
from hammer.server.backends.base import (
    Backend,
    CacheStats,
    Chunk,
    ConstraintRejected,
    EngineUnavailable,
    GenerationRequest,
    ModelInfo,
    OutputConstraint,
)
from hammer.server.backends.llamacpp_engine import Adapter, BatchEngine, Emit, EngineConfig, GenerationStopped, Job
from hammer.server.backends.llamacpp_sampler import SequenceSampler
from hammer.server.backends.prefix_store import model_key
from hammer.server.backends.special_text import fragments
from hammer.server.chat_template import render_chat_template, template_or_chatml
from hammer.server.grammar import SchemaLimits, SchemaRejected, sequence_gbnf
from hammer.server.request_context import API_KEY_ID
from hammer.server.settings import Settings
from llama_cpp._internals import LlamaModel

log = logging.getLogger(__name__)


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


def vocab_special_strings(model: LlamaModel) -> frozenset[str]:
    """The texts ``tokenize(special=True)`` reads as single tokens: control, user-defined and unknown tokens."""
    vocab = model.vocab
    kinds = (llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
             | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN)
    texts = (llama_cpp.llama_vocab_get_text(vocab, token).decode("utf-8", "replace")
             for token in range(llama_cpp.llama_vocab_n_tokens(vocab))
             if llama_cpp.llama_vocab_get_attr(vocab, token) & kinds)
    return frozenset(text for text in texts if text)


def gguf_metadata(model: LlamaModel) -> dict[str, str]:
    """The GGUF's metadata as strings; none if llama-cpp-python cannot read it (a value it cuts in the
    middle of a UTF-8 character), as its ``Llama`` does: the model still serves, with ChatML."""
    try:
        return model.metadata()
    except Exception as exc:  # noqa: BLE001 - metadata is optional: say so, do not fail the load
        log.warning("could not read the GGUF's metadata (%s): no chat template or recommended sampling", exc)
        return {}


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


def adapter_metadata(adapter: llama_cpp.llama_adapter_lora_p) -> dict[str, str]:
    """A LoRA adapter's GGUF metadata (scalars) as strings, as llama.cpp read it."""
    buffer = ctypes.create_string_buffer(1024)
    found = {}
    for i in range(llama_cpp.llama_adapter_meta_count(adapter)):
        if llama_cpp.llama_adapter_meta_key_by_index(adapter, i, buffer, len(buffer)) < 0:
            continue
        key = buffer.value.decode("utf-8", "replace")
        if llama_cpp.llama_adapter_meta_val_str_by_index(adapter, i, buffer, len(buffer)) >= 0:
            found[key] = buffer.value.decode("utf-8", "replace")
    return found


def adapter_tag(path: str) -> int:
    """A negative int32 that changes with the adapter file (as the prefix cache's folder does with the
    model's): its prompts' cache entries, also those saved with --cache-dir, match only its own."""
    return -1 - int(model_key(path), 16) % (2**31 - 1)


def longest_token(model: LlamaModel) -> int:
    """Bytes of the vocab's longest token piece (an upper bound on the characters it decodes to)."""
    vocab, buffer = model.vocab, ctypes.create_string_buffer(1024)
    return max(llama_cpp.llama_token_to_piece(vocab, token, buffer, len(buffer), 0, True)
               for token in range(llama_cpp.llama_vocab_n_tokens(vocab)))


class LlamaCppBackend(Backend):
    """Generations run in a ``BatchEngine`` (``--parallel`` at once); a vocab-only load of the model
    tokenizes and reads the GGUF's metadata. (Not llama-cpp-python's ``Llama``: it compiles every chat
    template in the file with its own Jinja environment, so a template it cannot parse stopped the
    server from starting; this server renders templates itself and falls back to ChatML.)"""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.max_concurrency = settings.parallel
        self._tokenizer: LlamaModel | None = None
        self._metadata: dict[str, str] = {}
        self._model: llama_cpp.llama_model_p | None = None
        self._engine: BatchEngine | None = None
        self._adapters: dict[str, Adapter] = {}  # --lora, by model id
        # Texts of the vocab's special tokens: parsed as tokens only where the template wrote them.
        self._specials: frozenset[str] = frozenset()
        self._template: str | None = None  # the GGUF's chat template, if it renders (else ChatML)
        self._bos = self._eos = ""  # the texts of its BOS and EOS tokens, which templates are given
        # serving counts a prompt's tokens, then generate() needs them again: tokenize once.
        self._tokenized = functools.lru_cache(maxsize=32)(self._tokenize)

    async def start(self) -> ModelInfo:
        path = self._settings.model_path()
        if not os.path.isfile(path):
            raise EngineUnavailable(f"model file not found: {path} (--model expects a .gguf file)")
        try:
            # llama.cpp's own log goes through llama-cpp-python's logger: errors only, as ``Llama(verbose=False)``
            # sets it (at INFO each load prints the GGUF's every metadata key).
            logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
            self._tokenizer = await asyncio.to_thread(self._load_vocab, path)
            self._model = await asyncio.to_thread(self._load_model, path)
            self._engine = await asyncio.to_thread(BatchEngine, self._model, self._engine_config())
        except (ValueError, RuntimeError) as exc:
            await self.close()
            raise EngineUnavailable(f"llama.cpp could not load {path}: {exc}") from exc
        try:
            adapter_sampling = await asyncio.to_thread(self._load_adapters, path)
        except EngineUnavailable:
            await self.close()
            raise
        self._metadata = gguf_metadata(self._tokenizer)
        self._specials = vocab_special_strings(self._tokenizer)
        self._template = template_or_chatml(self._metadata.get("tokenizer.chat_template"), path)
        self._bos = self._token_text("tokenizer.ggml.bos_token_id")
        self._eos = self._token_text("tokenizer.ggml.eos_token_id")
        default = self._settings.default_adapter_path()
        return ModelInfo(self._settings.model_name(), self._settings.n_ctx, {"path": path},
                         max_token_chars=longest_token(self._tokenizer),
                         vocab_size=llama_cpp.llama_vocab_n_tokens(self._tokenizer.vocab),
                         sampling=recommended_sampling(self._metadata), adapters=adapter_sampling,
                         default_model=default.stem if default is not None else None)

    @staticmethod
    def _load_vocab(path: str) -> LlamaModel:
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        return LlamaModel(path_model=path, params=params, verbose=False)

    def _load_model(self, path: str) -> llama_cpp.llama_model_p:
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = self._settings.n_gpu_layers
        model = llama_cpp.llama_model_load_from_file(path.encode("utf-8"), params)
        if not model:
            raise ValueError("not a model llama.cpp can load")
        return model

    def _load_adapters(self, model_path: str) -> dict[str, dict[str, float]]:
        """Load each ``--lora`` adapter on the model; their recommended sampling by model id. One llama.cpp
        refuses stops the start (the server would otherwise answer its id with the base model)."""
        sampling = {}
        default = self._settings.default_adapter_path()
        for name, path in self._settings.lora_adapters():
            handle = llama_cpp.llama_adapter_lora_init(self._model, path.encode("utf-8"))
            if not handle:
                what = (f"the embedded model's default adapter {path} (--no-lora serves without it)"
                        if default is not None and path == str(default) else f"--lora {name}={path}")
                raise EngineUnavailable(
                    f"{what}: llama.cpp could not load it as a LoRA adapter of {model_path} (it needs "
                    "a GGUF LoRA adapter, e.g. from `hammer export --adapter-gguf`, made for this model's "
                    "architecture and tensor shapes; llama.cpp's reason is in the log above)")
            self._adapters[name] = Adapter(name, handle, adapter_tag(path))
            sampling[name] = recommended_sampling(adapter_metadata(handle))
            log.info("LoRA adapter %s served as %r (recommended sampling: %s)", path, name, sampling[name] or "none")
        return sampling

    def _engine_config(self) -> EngineConfig:
        settings = self._settings
        threads = settings.n_threads or max(1, (os.cpu_count() or 2) // 2)
        cache_dir = settings.cache_dir / model_key(settings.model_path()) if settings.cache_dir else None
        return EngineConfig(n_ctx=settings.n_ctx, parallel=settings.parallel, batch_tokens=settings.batch_tokens,
                            cache_tokens=settings.cache_tokens, threads=threads, flash_attn=settings.flash_attn,
                            cache_dir=cache_dir)

    async def close(self) -> None:
        if self._engine is not None:
            await asyncio.to_thread(self._engine.close)  # stops running generations, then frees the context
            self._engine = None
        self._adapters.clear()  # freed with the model, after the context that uses them
        if self._model is not None:
            llama_cpp.llama_model_free(self._model)
            self._model = None
        if self._tokenizer is not None:
            self._tokenizer.close()
            self._tokenizer = None

    def health_error(self) -> str | None:
        if self._engine is not None and not self._engine.alive():
            return "the llama.cpp engine thread stopped"
        return None

    @property
    def tokenizer(self) -> LlamaModel:
        """The model's vocabulary (loaded without weights)."""
        if self._tokenizer is None:
            raise EngineUnavailable("the model is not loaded")
        return self._tokenizer

    @property
    def engine(self) -> BatchEngine:
        if self._engine is None:
            raise EngineUnavailable("the model is not loaded")
        return self._engine

    def prefix_cache_stats(self) -> CacheStats | None:
        return self._engine.cache_stats() if self._engine is not None else None

    def tokenize(self, prompt: str, plain_texts: Sequence[str] = ()) -> list[int]:
        """Prompt tokens: the template's markers as special tokens, ``plain_texts`` (client text) as plain text."""
        return list(self._tokenized(prompt, tuple(plain_texts)))

    def _tokenize(self, prompt: str, plain_texts: tuple[str, ...]) -> tuple[int, ...]:
        tokenizer = self.tokenizer
        tokens: list[int] = []
        for i, (text, special) in enumerate(fragments(prompt, plain_texts, self._specials)):
            tokens += tokenizer.tokenize(text.encode("utf-8"), add_bos=i == 0, special=special)
        return tuple(tokens)

    def count_tokens(self, prompt: str, plain_texts: Sequence[str] = ()) -> int:
        return len(self._tokenized(prompt, tuple(plain_texts)))

    def chat_prompt(self, messages: Sequence[Mapping[str, Any]]) -> str:
        bos = self._bos
        prompt = render_chat_template(self._template, messages, bos, self._eos)
        # The template writes BOS itself; tokenize() adds it again where the vocab asks for it.
        return prompt[len(bos):] if bos and prompt.startswith(bos) and self.tokenizer.add_bos_token() else prompt

    def _token_text(self, key: str) -> str:
        """The text of the special token a metadata key names (``tokenizer.ggml.bos_token_id``), or ""."""
        if key not in self._metadata:
            return ""
        return self.tokenizer.detokenize([int(self._metadata[key])], special=True).decode("utf-8", "replace")

    def chat_template_source(self) -> str | None:
        return self._template

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
        sampler = llama_cpp.llama_sampler_init_grammar(self.tokenizer.vocab, grammar.encode("utf-8"), b"root")
        if not sampler:
            return False
        llama_cpp.llama_sampler_free(sampler)
        return True

    def _job(self, request: GenerationRequest, emit: Emit) -> Job:
        """Tokens and sampler for ``request``, built in a worker thread (not the engine's: a large grammar
        takes milliseconds to parse, which would stall every running generation)."""
        engine = self.engine
        grammar = self._grammar(request.constraint) if request.constraint is not None else None
        tokens = self.tokenize(request.prompt, request.plain_texts)
        adapter = self._adapters[request.adapter] if request.adapter is not None else None
        return Job(tokens, request.params, SequenceSampler(engine.vocab, request.params, grammar), emit,
                   adapter=adapter, cache_scope=self._cache_scope())

    def _cache_scope(self) -> int | None:
        """With ``--cache-per-key``, the tag of the requesting API key: a prompt is then restored only for
        the key that sent it (otherwise its answer time tells another key that it was sent)."""
        key_id = API_KEY_ID.get() if self._settings.cache_per_key else None
        return None if key_id is None else -1 - int(key_id[:16], 16) % (2**31 - 1)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Chunk | BaseException] = asyncio.Queue()

        def emit(item: Chunk | BaseException) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone at interpreter exit
                loop.call_soon_threadsafe(queue.put_nowait, item)

        try:
            job = await asyncio.to_thread(self._job, request, emit)
        except ConstraintRejected as exc:  # check() passed, so this is the engine's fault: 503 as before
            raise EngineUnavailable(f"llama.cpp generation failed: {exc}") from exc
        engine = self.engine
        try:
            engine.submit(job)
        except GenerationStopped:
            job.sampler.free()
            raise EngineUnavailable("generation stopped: the server is shutting down") from None
        try:
            while True:
                item = await queue.get()
                if isinstance(item, EngineUnavailable):
                    raise item
                if isinstance(item, GenerationStopped):
                    raise EngineUnavailable("generation stopped: the server is shutting down")
                if isinstance(item, BaseException):
                    raise EngineUnavailable(f"llama.cpp generation failed: {item}") from item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            job.cancelled.set()  # the engine drops the sequence before its next step
            engine.wake()
