"""Continuous batching on llama.cpp's C API: one context, one worker thread, up to ``parallel``
generations sharing each ``llama_decode``.

Each step the worker puts one token of every generating sequence and, in the room left in the batch
(``batch_tokens``), the next chunk of prompts still being evaluated into one ``llama_batch``;
sequences join and leave between steps, so a new prompt does not stall the others for longer than
one chunk. The KV cache is unified: all sequences share ``n_ctx + cache_tokens`` cells, and a prompt
prefix copied from a cached sequence (``seq_cp``) shares its cells instead of duplicating them.

When the cells run out, the least recently used cached prefix is dropped; if none is left, the
sequence that joined last is set back (its KV dropped, its prompt and the tokens it generated
evaluated again later; what it sent stays valid, its sampler state is untouched) until another one
ends, as vLLM preempts by recomputation.
"""

from __future__ import annotations

import codecs
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import llama_cpp
import numpy as np
from hammer.server.backends.base import Chunk, SamplingParams, TokenLogprob
from hammer.server.backends.llamacpp_sampler import SequenceSampler, Vocab
from hammer.server.backends.prefix_cache import CacheStats, Match, PrefixCache
from hammer.server.backends.stops import StopMatcher

#: What a job's ``emit`` receives: text as it is generated, then the last chunk or the error.
Emit = Callable[[Chunk | BaseException], None]


class GenerationStopped(Exception):
    """The engine is shutting down: the generation ends without a result."""


@dataclass
class Job:
    """One generation as the engine takes it: a tokenized prompt and a sampler built for it."""

    tokens: list[int]
    params: SamplingParams
    sampler: SequenceSampler
    emit: Emit
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class EngineConfig:
    n_ctx: int
    parallel: int
    batch_tokens: int
    cache_tokens: int
    threads: int
    flash_attn: bool
    #: Cached prefixes kept at most (each is an idle llama.cpp sequence).
    cache_entries: int = 32


class _Sequence:
    """A job's state in the worker: its llama.cpp sequence, tokens still to evaluate, text so far."""

    def __init__(self, job: Job, seq_id: int, joined: int) -> None:
        self.job = job
        self.seq_id = seq_id
        self.joined = joined
        self.n_past = 0  # tokens of this sequence in the KV cache
        self.pending: list[int] = list(job.tokens)  # tokens to evaluate next
        self.generated: list[int] = []
        self.started = False  # the cache was looked up (again after a setback)
        self.cached = False  # the prompt went into the prefix cache
        self.source: Match | None = None
        self.held = False  # set back for want of KV cells: waits until another sequence ends
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
        params.n_ctx = config.n_ctx + config.cache_tokens
        params.n_batch = params.n_ubatch = config.batch_tokens
        params.n_seq_max = config.parallel + config.cache_entries
        # llama.cpp reserves logits rows for at least n_seq_max outputs and asserts they fit this.
        params.n_outputs_max = max(config.batch_tokens, params.n_seq_max)
        params.kv_unified = True
        params.n_threads = params.n_threads_batch = config.threads
        params.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if config.flash_attn
                                  else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        params.no_perf = True
        self._ctx = llama_cpp.llama_init_from_model(model, params)
        if not self._ctx:
            raise RuntimeError("llama.cpp could not create a context (out of memory?)")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(config.batch_tokens, 0, 1)
        self._cache = PrefixCache(config.cache_tokens, range(config.parallel, config.parallel + config.cache_entries))
        self._free_ids = list(range(config.parallel))
        self._running: list[_Sequence] = []
        self._joined = 0
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

    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        """Stop every generation (their jobs get ``GenerationStopped``), wait for the worker, free the context."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join()
        llama_cpp.llama_batch_free(self._batch)
        llama_cpp.llama_free(self._ctx)

    # -- the worker ----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and not self._incoming and not self._running:
                    self._wake.wait()
                if self._stopping:
                    break
                while self._incoming and self._free_ids:
                    self._running.append(_Sequence(self._incoming.popleft(), self._free_ids.pop(), self._joined))
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
            sequence.job.emit(GenerationStopped("generation cancelled"))  # nobody reads it: the client left
            self._end(sequence)

    def _step(self) -> None:
        """One ``llama_decode`` over every sequence that has tokens to evaluate, then sampling."""
        while True:
            plan = self._plan()
            if not plan:
                return
            rc = self._decode(self._batch)
            if rc == 0:
                break
            if rc != 1:
                raise RuntimeError(f"llama_decode returned {rc}")
            self._make_room()
        for sequence, count, output in plan:
            sequence.n_past += count
            del sequence.pending[:count]
            if sequence.prompt_done and not sequence.cached:
                self._cache_prompt(sequence)
            if output is not None:
                logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._ctx, output),
                                               shape=(self._vocab.size,))
                self._advance(sequence, *sequence.job.sampler.sample(logits))

    def _decode(self, batch: llama_cpp.llama_batch) -> int:
        return llama_cpp.llama_decode(self._ctx, batch)

    def _plan(self) -> list[tuple[_Sequence, int, int | None]]:
        """Fill the batch: generating sequences first (one token each), then prompt chunks in the order
        the sequences joined. Returns (sequence, tokens added, batch index of its logits or None)."""
        batch, room = self._batch, self._config.batch_tokens
        plan: list[tuple[_Sequence, int, int | None]] = []
        n = 0
        order = sorted((s for s in self._running if not s.held), key=lambda s: (not s.prompt_done, s.joined))
        for sequence in order:
            if room == 0:
                break
            if not sequence.started:
                self._start(sequence)
            take = sequence.pending[:room]
            for offset, token in enumerate(take):
                batch.token[n + offset] = token
                batch.pos[n + offset] = sequence.n_past + offset
                batch.n_seq_id[n + offset] = 1
                batch.seq_id[n + offset][0] = sequence.seq_id
                batch.logits[n + offset] = False
            n += len(take)
            room -= len(take)
            output = None
            if len(take) == len(sequence.pending):  # its last pending token: sample after it
                batch.logits[n - 1] = True
                output = n - 1
            plan.append((sequence, len(take), output))
        batch.n_tokens = n
        return plan

    def _start(self, sequence: _Sequence) -> None:
        """Begin from the longest cached prefix of the sequence's tokens, if there is one."""
        sequence.started = True
        if sequence.job.params.seed is not None:
            # A seed asks for a reproducible result; a copied prefix sits in other KV cells than a fresh
            # evaluation, which moves logits slightly (attention sums in another order), enough to
            # change a sampled token: seeded requests evaluate their whole prompt.
            return
        tokens = sequence.job.tokens + sequence.generated
        match = self._cache.lookup(tokens)
        if match is not None:
            llama_cpp.llama_memory_seq_cp(self._memory, match.seq_id, sequence.seq_id, 0, match.length)
            sequence.n_past = match.length
            sequence.pending = tokens[match.length:]
            sequence.source = match

    def _cache_prompt(self, sequence: _Sequence) -> None:
        sequence.cached = True
        tokens = sequence.job.tokens
        seq_id, cleared = self._cache.store(tokens, sequence.source)
        for stale in cleared:
            llama_cpp.llama_memory_seq_rm(self._memory, stale, -1, -1)
        if seq_id is not None:
            llama_cpp.llama_memory_seq_cp(self._memory, sequence.seq_id, seq_id, 0, len(tokens))

    def _make_room(self) -> None:
        """The KV cache had no cells for the batch: drop a cached prefix, else set a sequence back."""
        stale = self._cache.evict_oldest()
        if stale is not None:
            llama_cpp.llama_memory_seq_rm(self._memory, stale, -1, -1)
            return
        active = [s for s in self._running if not s.held]
        if len(active) < 2:
            raise RuntimeError("the KV cache is full")  # cannot happen: a lone request fits n_ctx
        youngest = max(active, key=lambda s: s.joined)
        llama_cpp.llama_memory_seq_rm(self._memory, youngest.seq_id, -1, -1)
        youngest.n_past, youngest.started, youngest.held = 0, False, True
        youngest.pending = youngest.job.tokens + youngest.generated

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
            job.emit(Chunk(text, "stop", len(sequence.generated), tuple(sequence.logprobs)))
            self._end(sequence)
            return
        if text:
            job.emit(Chunk(text, logprobs=tuple(sequence.logprobs)))
            sequence.logprobs = []
        if len(sequence.generated) >= params.max_tokens:
            self._finish(sequence, "length")
            return
        sequence.pending.append(token)

    def _finish(self, sequence: _Sequence, reason: str) -> None:
        text = sequence.stops.feed(sequence.decoder.decode(b"", final=True)) + sequence.stops.flush()
        sequence.job.emit(Chunk(text, reason, len(sequence.generated), tuple(sequence.logprobs)))  # type: ignore[arg-type]
        self._end(sequence)

    def _end(self, sequence: _Sequence) -> None:
        """Free the sequence's KV cells, sampler and id; sequences set back may resume."""
        llama_cpp.llama_memory_seq_rm(self._memory, sequence.seq_id, -1, -1)
        sequence.job.sampler.free()
        self._running.remove(sequence)
        self._free_ids.append(sequence.seq_id)
        for waiting in self._running:
            waiting.held = False

    def _fail_all(self, error: BaseException) -> None:
        """End every running generation with ``error`` and forget the KV: after a failed decode its
        state is unknown (llama.cpp keeps the micro-batches it managed)."""
        for sequence in list(self._running):
            sequence.job.emit(error)
            self._end(sequence)
        for seq_id in self._cache.clear():
            llama_cpp.llama_memory_seq_rm(self._memory, seq_id, -1, -1)
        llama_cpp.llama_memory_clear(self._memory, True)
