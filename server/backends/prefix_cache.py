"""Which recent prompts the llama.cpp engine keeps, with their KV state saved in host memory: the
longest match for a new prompt, least-recently-used eviction under a budget in tokens.

Pure bookkeeping: the state is an opaque value the engine saves and restores (llama.cpp's
``llama_state_seq_get_data``/``set_data``), so the policy is testable alone.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, Sequence, TypeVar

import numpy as np
from hammer.server.backends.base import CacheStats

State = TypeVar("State")


@dataclass(frozen=True)
class Match(Generic[State]):
    """A cached prompt whose first ``length`` tokens a new prompt shares: restore ``state``, keep that many."""

    key: int
    length: int
    state: State


@dataclass(frozen=True)
class Entry(Generic[State]):
    """A cached prompt as it is saved and loaded (``--cache-dir``)."""

    tokens: np.ndarray
    state: State
    #: A later prompt grew from it: it is evicted before entries that are not.
    superseded: bool = False


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the longest common prefix of two token arrays.

    >>> common_prefix(np.array([1, 2, 3]), np.array([1, 2, 4, 5]))
    2
    """
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


class PrefixCache(Generic[State]):
    """Entries are whole prompts, as in llama-server's prompt cache, so a prompt asked again costs one
    token. A prompt that grew out of an entry (it reused at least half of it: the same tool set with
    another question, the same conversation one turn on) supersedes it: superseded entries are evicted
    first, oldest first, then the least recently used. So questions to one tool set never push out
    another tool set while an older question of their own is left to drop."""

    def __init__(self, budget_tokens: int, min_reuse: int = 16) -> None:
        self._budget = budget_tokens
        #: A match shorter than this is a miss (every prompt shares its first few template tokens).
        self._min_reuse = min_reuse
        # key -> (tokens, state), least recently used first.
        self._entries: OrderedDict[int, tuple[np.ndarray, State]] = OrderedDict()
        self._superseded: set[int] = set()
        self._next_key = 0
        self._held = 0
        self._hits = self._misses = self._reused = self._evictions = 0

    def lookup(self, tokens: Sequence[int]) -> Match[State] | None:
        """The entry sharing the longest prefix with ``tokens`` (at most all but the last token, which
        must be evaluated to sample from), counted as a hit or a miss."""
        prompt = np.asarray(tokens, dtype=np.int32)
        best: Match[State] | None = None
        best_size = 0
        for key, (cached, state) in self._entries.items():
            length = min(common_prefix(prompt, cached), len(prompt) - 1)
            # On a tie the shorter entry (the prompt itself rather than a conversation that grew from
            # it), then the most recently used (later): a live one rather than one it superseded.
            if length >= self._min_reuse and (best is None or length > best.length or (
                    length == best.length and len(cached) <= best_size)):
                best, best_size = Match(key, length, state), len(cached)
        if best is None:
            self._misses += 1
            return None
        self._hits += 1
        self._reused += best.length
        self._entries.move_to_end(best.key)
        if best.length >= len(self._entries[best.key][0]) - 1:  # the whole entry asked for again: live
            self._superseded.discard(best.key)
        return best

    def wants(self, tokens: Sequence[int], grew_from: Match[State] | None) -> bool:
        """Whether ``store`` would keep anything new: not for a prompt larger than the budget, nor for
        one the cache holds already (saving a state costs a copy of its KV)."""
        if len(tokens) > self._budget:
            return False
        entry = self._entries.get(grew_from.key) if grew_from is not None else None
        return entry is None or not np.array_equal(entry[0], np.asarray(tokens, dtype=np.int32))

    def store(self, tokens: Sequence[int], state: State, grew_from: Match[State] | None) -> None:
        """Keep ``tokens`` with its KV ``state``, superseding the entry it grew from, and drop entries
        beyond the budget: superseded ones first, then the least recently used."""
        if len(tokens) > self._budget:
            return
        if grew_from is not None and grew_from.key in self._entries:
            if 2 * grew_from.length >= len(self._entries[grew_from.key][0]):
                self._superseded.add(grew_from.key)
        self._evictions += self._make_room(len(tokens))
        self._add(tokens, state)

    def forget(self, match: Match[State]) -> None:
        """Drop the entry ``match`` came from (its state could not be restored)."""
        if match.key in self._entries:
            self._drop(match.key)

    def entries(self) -> list[Entry[State]]:
        """Every entry, least recently used first (``restore`` them in this order to rebuild the cache)."""
        return [Entry(tokens, state, key in self._superseded) for key, (tokens, state) in self._entries.items()]

    def restore(self, entry: Entry[State]) -> None:
        """Keep a saved entry as it was, superseded or not: the most recently used so far. Entries it
        pushes out (the budget is smaller than when they were saved) are not counted as evictions."""
        if len(entry.tokens) > self._budget:
            return
        self._make_room(len(entry.tokens))
        key = self._add(entry.tokens, entry.state)
        if entry.superseded:
            self._superseded.add(key)

    def stats(self) -> CacheStats:
        return CacheStats(self._hits, self._misses, self._reused, self._held, len(self._entries), self._evictions)

    def _make_room(self, tokens: int) -> int:
        """Drop entries until ``tokens`` more fit the budget; how many went."""
        dropped = 0
        while self._entries and self._held + tokens > self._budget:
            self._drop(self._victim())
            dropped += 1
        return dropped

    def _add(self, tokens: Sequence[int], state: State) -> int:
        """A new most recently used entry; its key."""
        key, self._next_key = self._next_key, self._next_key + 1
        self._entries[key] = (np.asarray(tokens, dtype=np.int32), state)
        self._held += len(tokens)
        return key

    def _victim(self) -> int:
        """The oldest superseded entry, or else the least recently used."""
        return next((key for key in self._entries if key in self._superseded), next(iter(self._entries)))

    def _drop(self, key: int) -> None:
        tokens, _ = self._entries.pop(key)
        self._superseded.discard(key)
        self._held -= len(tokens)
