"""Which recent prompts the llama.cpp engine keeps in its KV cache, as idle sequences: the longest
match for a new prompt, least-recently-used eviction under a budget in tokens.

Pure bookkeeping (no llama.cpp): the engine does the KV work (``seq_cp``/``seq_rm``) for the sequence
ids this class hands out, so the policy is testable alone.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    #: Prompt tokens not evaluated because a cached prefix was copied instead.
    reused_tokens: int
    #: Tokens the entries hold in all (the budget's measure; entries that share a prefix share
    #: KV cells, so the KV holds at most this many).
    cached_tokens: int
    entries: int
    evictions: int


@dataclass(frozen=True)
class Match:
    """A cached prefix a prompt can start from: copy positions ``[0, length)`` of sequence ``seq_id``."""

    key: int
    seq_id: int
    length: int


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the longest common prefix of two token arrays.

    >>> common_prefix(np.array([1, 2, 3]), np.array([1, 2, 4, 5]))
    2
    """
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


class PrefixCache:
    """Entries are whole prompts; a prompt that grew out of an entry (it reused at least half of it:
    the same tool set with another question, or the same conversation one turn on) replaces it, so
    one tool set holds one entry however many questions it is asked."""

    def __init__(self, budget_tokens: int, seq_ids: Sequence[int], min_reuse: int = 16) -> None:
        self._budget = budget_tokens
        self._free = list(seq_ids)
        #: A match shorter than this is a miss (every prompt shares its first few template tokens).
        self._min_reuse = min_reuse
        # key -> (seq id, tokens), least recently used first.
        self._entries: OrderedDict[int, tuple[int, np.ndarray]] = OrderedDict()
        self._next_key = 0
        self._held = 0
        self._hits = self._misses = self._reused = self._evictions = 0

    def lookup(self, tokens: Sequence[int]) -> Match | None:
        """The entry sharing the longest prefix with ``tokens`` (at most all but the last token, which
        must be evaluated to sample from), counted as a hit or a miss."""
        prompt = np.asarray(tokens, dtype=np.int32)
        best: Match | None = None
        for key, (seq_id, cached) in self._entries.items():
            length = min(common_prefix(prompt, cached), len(prompt) - 1)
            if length >= self._min_reuse and (best is None or length > best.length):
                best = Match(key, seq_id, length)
        if best is None:
            self._misses += 1
            return None
        self._hits += 1
        self._reused += best.length
        self._entries.move_to_end(best.key)
        return best

    def store(self, tokens: Sequence[int], grew_from: Match | None) -> tuple[int | None, list[int]]:
        """Keep ``tokens`` as an entry. Returns the sequence id to copy the prompt's KV into (None:
        the prompt is larger than the whole budget, or there is no id left) and the ids whose KV must
        be cleared first (evicted entries, or the entry the prompt replaces)."""
        if len(tokens) > self._budget:
            return None, []
        cleared: list[int] = []
        replaced = self._entries.get(grew_from.key) if grew_from is not None else None
        if replaced is not None and grew_from is not None and 2 * grew_from.length >= len(replaced[1]):
            self._drop(grew_from.key)
            cleared.append(replaced[0])
        while self._entries and (not self._free or self._held + len(tokens) > self._budget):
            cleared.append(self._evict())
        if not self._free:
            return None, cleared
        seq_id = self._free.pop()
        self._entries[self._next_key] = (seq_id, np.asarray(tokens, dtype=np.int32))
        self._next_key += 1
        self._held += len(tokens)
        return seq_id, cleared

    def evict_oldest(self) -> int | None:
        """Drop the least recently used entry (the KV is full); its sequence id, or None if empty."""
        return self._evict() if self._entries else None

    def clear(self) -> list[int]:
        """Forget every entry (the KV was cleared); their sequence ids."""
        ids = [seq_id for seq_id, _ in self._entries.values()]
        for key in list(self._entries):
            self._drop(key)
        return ids

    def stats(self) -> CacheStats:
        return CacheStats(self._hits, self._misses, self._reused, self._held, len(self._entries), self._evictions)

    def _evict(self) -> int:
        key = next(iter(self._entries))
        seq_id = self._drop(key)
        self._evictions += 1
        return seq_id

    def _drop(self, key: int) -> int:
        seq_id, tokens = self._entries.pop(key)
        self._held -= len(tokens)
        self._free.append(seq_id)
        return seq_id
