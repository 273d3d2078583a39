"""Continuous batching on llama.cpp's C API: one context, one worker thread, up to ``parallel``
generations sharing each ``llama_decode``.

Each step the worker evaluates either one token of every generating sequence or the next chunk
(``batch_tokens``) of one waiting prompt, taking turns, in one ``llama_batch``; sequences join and
leave between steps, so a new prompt does not stall the others for longer than one chunk.

Each sequence has a KV stream of its own (``n_ctx`` cells; llama-server's slots): its cells lie in
the order of its positions whatever else runs. llama.cpp's CPU attention sums cells in cell order, so
in a shared (unified) KV a token landing in a hole before its prefix moved this 4-bit model's logits
by up to 0.5 and flipped greedy choices; with streams, what a generation computes depends only on
whether it is decoded alone or with others (docs/llamacpp.md: flash attention takes another kernel
for one sequence). Prompt prefixes are cached as saved KV state in host memory (``PrefixCache``) and
restored into a stream (``llama_state_seq_set_data``: a copy, ~0.2 ms per 100 tokens here) instead of
being evaluated again.

LoRA adapters (``--lora``) are set on the context, so on a whole ``llama_decode``: each step serves the
sequences of one adapter (or of the bare base), batched as above, and the adapters with work take turns
(``_next_adapter``). Their prompts are cached under their adapter's tag, never restored for another.
"""

from __future__ import annotations

import codecs
import ctypes
import mmap
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import llama_cpp
import numpy as np
from hammer.server.backends import prefix_store
from hammer.server.backends.base import CacheStats, Chunk, SamplingParams, TokenLogprob
from hammer.server.backends.llamacpp_sampler import SequenceSampler, Vocab
from hammer.server.backends.prefix_cache import Match, PrefixCache
from hammer.server.backends.stops import StopMatcher

#: A sequence's saved KV state (llama.cpp's serialization, bytes).
SavedState = np.ndarray

#: What a job's ``emit`` receives: text as it is generated, then the last chunk or the error.
Emit = Callable[[Chunk | BaseException], None]



class GenerationStopped(Exception):
    """The engine is shutting down: the generation ends without a result."""


@dataclass(frozen=True, eq=False)
class Adapter:
    """A LoRA adapter loaded on the model (``llama_adapter_lora_init``). llama.cpp sets adapters per context,
    for a whole ``llama_decode``: a step serves the sequences of one adapter (or of the bare base) only."""

    name: str
    handle: llama_cpp.llama_adapter_lora_p
    #: Marks its prompts in the prefix cache: a negative number, never a token, put before the tokens, so a
    #: KV state computed with the adapter is never restored for the base or another adapter.
    tag: int


@dataclass
class Job:
    """One generation as the engine takes it: a tokenized prompt and a sampler built for it."""

    tokens: list[int]
    params: SamplingParams
    sampler: SequenceSampler
    emit: Emit
    cancelled: threading.Event = field(default_factory=threading.Event)
    #: Generate with this LoRA adapter (None: the bare base model).
    adapter: Adapter | None = None
    #: Whose prefix cache its prompt uses (``--cache-per-key``: a tag of its API key); None: the shared one.
    cache_scope: int | None = None

    def cache_key(self) -> list[int]:
        """The tokens its prompt is cached under: its scope's and its adapter's tags first, where it has them
        (negative, so never a token: an entry under another tag shares no prefix with it)."""
        tags = [tag for tag in (self.cache_scope, self.adapter.tag if self.adapter else None) if tag is not None]
        return [*tags, *self.tokens] if tags else self.tokens


@dataclass(frozen=True)
class EngineConfig:
    n_ctx: int
    parallel: int
    batch_tokens: int
    cache_tokens: int
    threads: int
    flash_attn: bool
    #: Where the prefix cache is kept across restarts (None: in memory only).
    cache_dir: Path | None = None
    #: Most steps in a row one adapter's sequences get while another adapter's wait (``_next_adapter``):
    #: a switch costs about one decode step here (benchmarks/lora_scheduling.py), so not every step.
    adapter_quantum: int = 8


class _Sequence:
    """A job's state in the worker: its llama.cpp sequence, tokens still to evaluate, text so far."""

    def __init__(self, job: Job, seq_id: int, joined: int) -> None:
        self.job = job
        self.seq_id = seq_id
        self.joined = joined
        self.n_past = 0  # tokens of this sequence in the KV cache
        self.pending: list[int] = list(job.tokens)  # tokens to evaluate next
        self.generated: list[int] = []
        self.started = False  # the cache was looked up
        self.cached = False  # the prompt went into the prefix cache
        self.source: Match[SavedState] | None = None
        self.generating = False  # its prompt is evaluated: one token a step from now on
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stops = StopMatcher(job.params.stop)
        self.logprobs: list[TokenLogprob] = []  # of tokens whose text is not sent yet

    @property
    def prompt_done(self) -> bool:
        return self.n_past >= len(self.job.tokens)


class BatchEngine:
    """Owns the llama.cpp context; ``submit`` jobs from any thread, ``close`` to stop."""

    def __init__(self, model: llama_cpp.llama_model_p, config: EngineConfig) -> None:
        self._config = config
        self._vocab = Vocab(llama_cpp.llama_model_get_vocab(model))
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = config.n_ctx * config.parallel  # one stream of n_ctx cells per sequence
        params.n_batch = params.n_ubatch = config.batch_tokens
        params.n_seq_max = config.parallel
        # llama.cpp reserves logits rows for at least n_seq_max outputs and asserts they fit this.
        params.n_outputs_max = max(config.batch_tokens, params.n_seq_max)
        params.kv_unified = False
        params.n_threads = params.n_threads_batch = config.threads
        params.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if config.flash_attn
                                  else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        params.no_perf = True
        self._ctx = llama_cpp.llama_init_from_model(model, params)
        if not self._ctx:
            raise RuntimeError("llama.cpp could not create a context (out of memory?)")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(config.batch_tokens, 0, 1)
        self._cache: PrefixCache[SavedState] = PrefixCache(config.cache_tokens)
        if config.cache_dir is not None:
            self._load_cache(config.cache_dir)
        self._free_ids = list(range(config.parallel))
        self._running: list[_Sequence] = []
        self._joined = 0
        self._prompt_turn = False  # with sequences both prompting and generating: whose step is next
        # The adapter set on the context (None: the bare base), how many steps in a row it has served, and
        # the step at which each adapter was last served (who waited longest goes next).
        self._adapter: Adapter | None = None
        self._adapter_steps = 0
        self._steps = 0
        self._served_at: dict[Adapter | None, int] = {}
        self._incoming: deque[Job] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="llama.cpp engine", daemon=True)
        self._thread.start()

    @property
    def vocab(self) -> Vocab:
        return self._vocab

    def submit(self, job: Job) -> None:
        with self._wake:
            if self._stopping:
                raise GenerationStopped("the server is shutting down")
            self._incoming.append(job)
            self._wake.notify()

    def wake(self) -> None:
        """Make the worker look at its jobs now (one was cancelled while it may be waiting)."""
        with self._wake:
            self._wake.notify()

    def cache_stats(self) -> CacheStats:
        return self._cache.stats()

    def active(self) -> int:
        """Generations submitted and not ended (running or waiting for a sequence)."""
        with self._wake:
            return len(self._running) + len(self._incoming)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        """Stop every generation (their jobs get ``GenerationStopped``), wait for the worker, write the
        prefix cache to ``cache_dir``, free the context."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join()
        if self._config.cache_dir is not None:
            prefix_store.save(self._config.cache_dir, self._cache.entries())
        llama_cpp.llama_batch_free(self._batch)
        llama_cpp.llama_free(self._ctx)

    def _load_cache(self, directory: Path) -> None:
        """The entries saved at the last shutdown, each read straight into memory of its own. One
        that cannot be (an empty state, no memory) is skipped: the server starts regardless."""
        for entry in prefix_store.load(directory, allocate=_host_buffer, state_bytes=self._state_bytes()):
            self._cache.restore(entry)

    def _state_bytes(self) -> Callable[[int], int]:
        """The bytes a saved state of ``n`` tokens takes with this model and context, measured (an
        empty sequence's state, and a one-token one's), so a file's claim is checked before any memory
        is given to it; 0 (nothing fits) past the cache's budget."""
        empty = llama_cpp.llama_state_seq_get_size(self._ctx, 0)
        batch = self._batch
        batch.token[0], batch.pos[0], batch.n_seq_id[0], batch.seq_id[0][0], batch.logits[0] = 0, 0, 1, 0, False
        batch.n_tokens = 1
        if self._decode(batch) != 0:
            raise RuntimeError("llama.cpp could not evaluate one token to measure a saved state")
        per_token = llama_cpp.llama_state_seq_get_size(self._ctx, 0) - empty
        llama_cpp.llama_memory_seq_rm(self._memory, 0, -1, -1)
        budget = self._config.cache_tokens
        return lambda n: empty + n * per_token if n <= budget else 0

    # -- the worker ----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and not self._incoming and not self._running:
                    self._wake.wait()
                if self._stopping:
                    break
                while self._incoming and self._free_ids:
                    # The lowest free id: llama.cpp puts sequences of consecutive ids in one micro-batch.
                    seq_id = min(self._free_ids)
                    self._free_ids.remove(seq_id)
                    self._running.append(_Sequence(self._incoming.popleft(), seq_id, self._joined))
                    self._joined += 1
            self._drop_cancelled()
            if self._running:
                try:
                    self._step()
                except Exception as exc:  # noqa: BLE001 - a failed decode ends these generations (503), not the engine
                    self._fail_all(exc)
        self._fail_all(GenerationStopped("the server is shutting down"))
        for job in self._incoming:
            job.sampler.free()
            job.emit(GenerationStopped("the server is shutting down"))

    def _drop_cancelled(self) -> None:
        for sequence in [s for s in self._running if s.job.cancelled.is_set()]:
            self._end(sequence, GenerationStopped("generation cancelled"))  # nobody reads it: the client left

    def _step(self) -> None:
        """One ``llama_decode`` (what ``_plan`` put in the batch), then sampling where a sequence's
        pending tokens are all evaluated."""
        plan = self._plan(self._sequences_of(self._next_adapter()))
        if not plan:
            return
        rc = self._decode(self._batch)
        if rc != 0:  # 1 (no KV cell) cannot happen: a sequence's stream holds n_ctx, and so fits its request
            raise RuntimeError(f"llama_decode returned {rc}")
        for sequence, count, output in plan:
            sequence.n_past += count
            del sequence.pending[:count]
            if output is not None:
                logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._ctx, output),
                                               shape=(self._vocab.size,))
                self._advance(sequence, *sequence.job.sampler.sample(logits))
                # After the first token went out: the copy (~5 ms for a 750-token prompt here) is not
                # on the time to first token. An ended sequence was cached by _end.
                if sequence.generating and not sequence.cached:
                    self._cache_prompt(sequence)

    def _decode(self, batch: llama_cpp.llama_batch) -> int:
        return llama_cpp.llama_decode(self._ctx, batch)

    def _next_adapter(self) -> Adapter | None:
        """The adapter this step serves, set on the context. The one set keeps the context while it has work,
        for up to ``adapter_quantum`` steps in a row if another adapter's sequences wait; then the adapter
        (or the bare base) with work that was served longest ago goes next. Switching costs a graph
        reservation in the next ``llama_decode`` (benchmarks/lora_scheduling.py measures it)."""
        with_work = {s.job.adapter for s in self._running}
        current = self._adapter
        if current not in with_work or (len(with_work) > 1 and self._adapter_steps >= self._config.adapter_quantum):
            waiting = with_work - {current} or with_work
            chosen = min(waiting, key=lambda a: (self._served_at.get(a, -1), min(
                s.joined for s in self._running if s.job.adapter is a)))
            if chosen is not current:
                self._set_adapter(chosen)
        self._adapter_steps += 1
        self._steps += 1
        self._served_at[self._adapter] = self._steps
        return self._adapter

    def _set_adapter(self, adapter: Adapter | None) -> None:
        if adapter is None:
            llama_cpp.llama_set_adapters_lora(self._ctx, None, 0, None)
        else:
            handles = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter.handle)
            llama_cpp.llama_set_adapters_lora(self._ctx, handles, 1, (ctypes.c_float * 1)(1.0))
        self._adapter, self._adapter_steps = adapter, 0

    def _sequences_of(self, adapter: Adapter | None) -> list[_Sequence]:
        return [s for s in self._running if s.job.adapter is adapter]

    def _plan(self, running: list[_Sequence]) -> list[tuple[_Sequence, int, int | None]]:
        """Fill the batch with one token of every generating sequence in ``running`` (those of one adapter),
        or with the next prompt chunk of the longest-waiting one, taking turns when there are both.
        Returns (sequence, tokens added, batch index of its logits or None).

        Never both in one batch: llama.cpp's CPU attention takes another kernel for 64 rows or more,
        which rounds differently, and with a KV stream per sequence llama.cpp would split a mixed batch
        into micro-batches anyway (``split_equal`` takes as many tokens from each sequence)."""
        # In seq_id order: with a KV stream per sequence, llama.cpp splits a batch into micro-batches of
        # consecutive, increasing ids (llama_batch_allocr::split_equal); any other order computes each
        # sequence alone, and batching gains nothing.
        decoding = sorted((s for s in running if s.generating), key=lambda s: s.seq_id)
        prompting = [s for s in running if not s.generating]
        if prompting and (not decoding or self._prompt_turn):
            waiting = min(prompting, key=lambda s: s.joined)
            if not waiting.started:  # looked up now, not at arrival: a prompt evaluated meanwhile may match
                self._start(waiting)
            chosen, take = [waiting], min(len(waiting.pending), self._config.batch_tokens)
        else:
            chosen, take = decoding, 1
        self._prompt_turn = chosen is decoding
        batch, plan, n = self._batch, [], 0
        for sequence in chosen:
            for offset, token in enumerate(sequence.pending[:take]):
                batch.token[n + offset] = token
                batch.pos[n + offset] = sequence.n_past + offset
                batch.n_seq_id[n + offset] = 1
                batch.seq_id[n + offset][0] = sequence.seq_id
                batch.logits[n + offset] = False
            n += take
            output = None
            if take == len(sequence.pending):  # its last pending token: sample after it
                batch.logits[n - 1] = True
                output = n - 1
            plan.append((sequence, take, output))
        batch.n_tokens = n
        return plan

    def _start(self, sequence: _Sequence) -> None:
        """Begin from the longest cached prefix of the prompt, if there is one."""
        sequence.started = True
        if sequence.job.params.seed is not None:
            # A seed asks for a reproducible result. The few tokens after a restored prefix are
            # evaluated as a batch of fewer than 64 rows, for which llama.cpp's CPU attention takes
            # another kernel than for a whole prompt, rounding differently: enough to change a sampled
            # token. Seeded requests evaluate their whole prompt (and are still cached for others).
            return
        key = sequence.job.cache_key()
        match = self._cache.lookup(key)
        if match is not None:
            state = match.state
            if llama_cpp.llama_state_seq_set_data(self._ctx, _bytes(state), len(state), sequence.seq_id) != len(state):
                # A state llama.cpp refuses (a file from another build): evaluate the prompt instead.
                llama_cpp.llama_memory_seq_rm(self._memory, sequence.seq_id, -1, -1)
                self._cache.forget(match)
                return
            length = match.length - (len(key) - len(sequence.job.tokens))  # without the tags
            llama_cpp.llama_memory_seq_rm(self._memory, sequence.seq_id, length, -1)
            sequence.n_past = length
            sequence.pending = sequence.job.tokens[length:]
            sequence.source = match

    def _cache_prompt(self, sequence: _Sequence) -> None:
        """Save the KV of the just-evaluated prompt (the sequence holds nothing else yet). A state that
        cannot be saved (no memory for the copy) is not cached; the generation goes on."""
        sequence.cached = True
        tokens = sequence.job.cache_key()
        if not self._cache.wants(tokens, sequence.source):
            return
        try:
            state = _host_buffer(llama_cpp.llama_state_seq_get_size(self._ctx, sequence.seq_id))
        except OSError:  # no memory for the copy
            return
        if llama_cpp.llama_state_seq_get_data(self._ctx, _bytes(state), len(state), sequence.seq_id) == len(state):
            self._cache.store(tokens, state, sequence.source)

    def _advance(self, sequence: _Sequence, token: int, logprob: TokenLogprob | None) -> None:
        """Take the sampled token: send its text, or end the generation."""
        job, params = sequence.job, sequence.job.params
        if self._vocab.is_end(token):
            self._finish(sequence, "stop")
            return
        if logprob is not None:
            sequence.logprobs.append(logprob)
        sequence.generated.append(token)
        text = sequence.stops.feed(sequence.decoder.decode(self._vocab.piece(token)))
        if sequence.stops.stopped:
            self._end(sequence, Chunk(text, "stop", len(sequence.generated), tuple(sequence.logprobs),
                                      stop_sequence=sequence.stops.matched))
            return
        if text:
            job.emit(Chunk(text, logprobs=tuple(sequence.logprobs)))
            sequence.logprobs = []
        if len(sequence.generated) >= params.max_tokens:
            self._finish(sequence, "length")
            return
        sequence.pending.append(token)
        sequence.generating = True

    def _finish(self, sequence: _Sequence, reason: str) -> None:
        text = sequence.stops.feed(sequence.decoder.decode(b"", final=True)) + sequence.stops.flush()
        self._end(sequence, Chunk(text, reason, len(sequence.generated), tuple(sequence.logprobs)))  # type: ignore[arg-type]

    def _end(self, sequence: _Sequence, last: Chunk | BaseException, keep: bool = True) -> None:
        """End the generation with ``last`` (whoever gets it finds the sequence gone from ``active``),
        then cache its prompt if that waited for the first token (``keep``: the KV is sound), and free
        its KV cells, sampler and id."""
        self._running.remove(sequence)
        try:
            sequence.job.sampler.free()
            sequence.job.emit(last)
            if keep and sequence.prompt_done and not sequence.cached:
                self._cache_prompt(sequence)  # the sampled token was never decoded: the KV is the prompt
        finally:  # whatever failed above (no memory for the copy), the id must not be lost
            llama_cpp.llama_memory_seq_rm(self._memory, sequence.seq_id, -1, -1)
            self._free_ids.append(sequence.seq_id)

    def _fail_all(self, error: BaseException) -> None:
        """End every running generation with ``error`` and clear the KV: after a failed decode its
        state is unknown (llama.cpp keeps the micro-batches it managed). The saved prefixes stay."""
        for sequence in list(self._running):
            self._end(sequence, error, keep=False)
        llama_cpp.llama_memory_clear(self._memory, True)


def _host_buffer(size: int) -> SavedState:
    """Room for a saved state in an anonymous mapping of its own: when the cache drops the state, the
    mapping goes and its memory returns to the system at once. From malloc, states of ever-changing
    sizes (megabytes each) fragmented the heap, since glibc serves blocks that size from the heap once
    one was freed, and the process grew by tens of MiB over a long run."""
    # Private (not shared with a forked child); on Linux and Android populated: the pages faulted in
    # with one call, not one fault per page during the copy (5 ms against 8 ms for a 750-token prompt
    # here). Windows has neither flag.
    flags = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_POPULATE", 0)
    mapping = mmap.mmap(-1, size, flags=flags) if flags else mmap.mmap(-1, size)
    return np.frombuffer(mapping, dtype=np.uint8)


def _bytes(state: SavedState) -> ctypes._Pointer[ctypes.c_uint8]:
    return state.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
