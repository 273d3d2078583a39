"""The prefix cache's policy alone: longest match, superseded entries evicted first, then LRU, under a budget."""

from __future__ import annotations

import numpy as np
from hammer.server.backends.prefix_cache import Entry, PrefixCache

TOOLS_A = list(range(100, 200))  # a tool set's prompt prefix: 100 tokens
TOOLS_B = list(range(300, 400))


def prompt(tools: list[int], question: int) -> list[int]:
    return [1, *tools, question, question + 1]


class TestLookup:
    def test_empty_cache_is_a_miss(self):
        cache: PrefixCache[str] = PrefixCache(1000)
        assert cache.lookup(prompt(TOOLS_A, 7)) is None
        assert cache.stats().misses == 1 and cache.stats().hits == 0

    def test_longest_matching_entry_wins_and_counts_reused_tokens(self):
        cache: PrefixCache[str] = PrefixCache(1000)
        cache.store([1, *TOOLS_A[:50]], "short", None)
        cache.store(prompt(TOOLS_A, 7), "long", None)
        match = cache.lookup(prompt(TOOLS_A, 9))
        assert match is not None and match.state == "long"
        assert match.length == 101  # BOS and the tools; the question differs
        assert cache.stats().reused_tokens == 101 and cache.stats().hits == 1

    def test_the_last_token_is_never_reused(self):
        """Sampling needs the logits of the prompt's last token: it is evaluated even on a full match."""
        cache: PrefixCache[str] = PrefixCache(1000)
        cache.store(prompt(TOOLS_A, 7), "a", None)
        match = cache.lookup(prompt(TOOLS_A, 7))
        assert match is not None and match.length == len(prompt(TOOLS_A, 7)) - 1

    def test_a_short_common_start_is_a_miss(self):
        cache: PrefixCache[str] = PrefixCache(1000, min_reuse=16)
        cache.store(prompt(TOOLS_A, 7), "a", None)
        assert cache.lookup([1, *TOOLS_A[:10], 999, 998]) is None


class TestStore:
    def test_a_prompt_that_grew_from_an_entry_is_kept_beside_it(self):
        cache: PrefixCache[str] = PrefixCache(1000)
        cache.store(prompt(TOOLS_A, 7), "q7", None)
        match = cache.lookup(prompt(TOOLS_A, 9))
        assert cache.wants(prompt(TOOLS_A, 9), match)
        cache.store(prompt(TOOLS_A, 9), "q9", match)
        assert cache.stats().entries == 2
        assert cache.lookup(prompt(TOOLS_A, 11)).state == "q9"  # type: ignore[union-attr]  # a tie: the newer
        repeat = cache.lookup(prompt(TOOLS_A, 7))  # asked again: all but its last token restored
        assert repeat is not None and repeat.state == "q7" and repeat.length == len(prompt(TOOLS_A, 7)) - 1

    def test_a_prompt_asked_again_finds_itself_not_the_conversation_grown_from_it(self):
        # P, then F (P and its answer: the next turn). P again restores P itself: not stored twice,
        # and F, the live conversation, is not marked superseded by it.
        cache: PrefixCache[str] = PrefixCache(3 * len(prompt(TOOLS_A, 7)))
        p, f = prompt(TOOLS_A, 7), [*prompt(TOOLS_A, 7), 50, 51, 52]
        cache.store(p, "p", None)
        cache.store(f, "f", cache.lookup(f))
        again = cache.lookup(p)
        assert again is not None and again.state == "p"
        assert not cache.wants(p, again)
        cache.store([2, *range(500, 520)], "other", None)  # room for it without evicting anything
        assert cache.lookup([*f, 53]).state == "f"  # type: ignore[union-attr]
        assert cache.stats().entries == 3

    def test_superseded_entries_go_before_other_tool_sets(self):
        # B is the least recently used, but A's older question is superseded by its newer one: it goes.
        cache: PrefixCache[str] = PrefixCache(3 * len(prompt(TOOLS_A, 7)))
        cache.store(prompt(TOOLS_B, 7), "b", None)
        cache.store(prompt(TOOLS_A, 7), "q7", None)
        cache.store(prompt(TOOLS_A, 9), "q9", cache.lookup(prompt(TOOLS_A, 9)))
        cache.store(prompt(TOOLS_A, 11), "q11", cache.lookup(prompt(TOOLS_A, 11)))
        assert cache.stats().evictions == 1
        assert cache.lookup(prompt(TOOLS_B, 7)).state == "b"  # type: ignore[union-attr]
        assert cache.lookup(prompt(TOOLS_A, 7)).state != "q7"  # type: ignore[union-attr]

    def test_an_entry_asked_for_again_is_no_longer_superseded(self):
        cache: PrefixCache[str] = PrefixCache(3 * len(prompt(TOOLS_A, 7)))
        cache.store(prompt(TOOLS_A, 7), "q7", None)
        cache.store(prompt(TOOLS_A, 9), "q9", cache.lookup(prompt(TOOLS_A, 9)))
        cache.store(prompt(TOOLS_B, 7), "b", None)
        assert cache.lookup(prompt(TOOLS_A, 7)).state == "q7"  # type: ignore[union-attr]  # a repeat: live again
        cache.store([2, *range(500, 600)], "c", None)  # a new tool set: the least recently used (q9) goes
        assert cache.stats().evictions == 1
        assert cache.lookup(prompt(TOOLS_A, 7)).state == "q7"  # type: ignore[union-attr]
        assert cache.lookup(prompt(TOOLS_B, 7)).state == "b"  # type: ignore[union-attr]

    def test_a_rebuilt_cache_keeps_order_and_superseded_entries(self):
        # What --cache-dir does across a restart: the rebuilt cache evicts as the first one would.
        size = len(prompt(TOOLS_A, 7))
        cache: PrefixCache[str] = PrefixCache(3 * size)
        cache.store(prompt(TOOLS_B, 7), "b", None)
        cache.store(prompt(TOOLS_A, 7), "q7", None)
        cache.store(prompt(TOOLS_A, 9), "q9", cache.lookup(prompt(TOOLS_A, 9)))
        saved = cache.entries()
        assert [(e.state, e.superseded) for e in saved] == [("b", False), ("q7", True), ("q9", False)]
        rebuilt: PrefixCache[str] = PrefixCache(3 * size)
        for entry in saved:
            rebuilt.restore(entry)
        assert [(e.state, e.superseded) for e in rebuilt.entries()] == [(e.state, e.superseded) for e in saved]
        rebuilt.store(prompt(TOOLS_B, 11), "b11", None)  # no room: the superseded q7 goes, not b
        assert [e.state for e in rebuilt.entries()] == ["b", "q9", "b11"]

    def test_a_cache_rebuilt_under_a_smaller_budget_trims_as_the_running_cache_would(self):
        size = len(prompt(TOOLS_A, 7))
        saved = [Entry(np.array(prompt(TOOLS_B, 7)), "b"), Entry(np.array(prompt(TOOLS_A, 7)), "q7", True),
                 Entry(np.array(prompt(TOOLS_A, 9)), "q9")]
        rebuilt: PrefixCache[str] = PrefixCache(2 * size)
        for entry in saved:
            rebuilt.restore(entry)
        assert [e.state for e in rebuilt.entries()] == ["b", "q9"]  # the superseded q7 went first
        assert rebuilt.stats().evictions == 0  # trimming what was saved is not the running cache evicting

    def test_an_exact_repeat_is_not_stored_again(self):
        cache: PrefixCache[str] = PrefixCache(1000)
        cache.store(prompt(TOOLS_A, 7), "q7", None)
        assert not cache.wants(prompt(TOOLS_A, 7), cache.lookup(prompt(TOOLS_A, 7)))

    def test_a_prompt_sharing_only_a_little_is_a_new_entry(self):
        cache: PrefixCache[str] = PrefixCache(1000, min_reuse=4)
        cache.store(prompt(TOOLS_A, 7), "a", None)
        match = cache.lookup([1, *TOOLS_A[:10], *TOOLS_B])
        assert match is not None and match.length == 11
        cache.store([1, *TOOLS_A[:10], *TOOLS_B], "b", match)
        assert cache.stats().entries == 2

    def test_least_recently_used_goes_first_under_the_budget(self):
        cache: PrefixCache[str] = PrefixCache(250)
        cache.store(prompt(TOOLS_A, 7), "a", None)
        cache.store(prompt(TOOLS_B, 7), "b", None)
        assert cache.lookup(prompt(TOOLS_A, 9)) is not None  # A is now the most recently used
        cache.store([2, *range(500, 600)], "c", None)
        assert cache.stats().cached_tokens <= 250 and cache.stats().evictions == 1
        assert cache.lookup(prompt(TOOLS_B, 9)) is None
        assert cache.lookup(prompt(TOOLS_A, 9)).state == "a"  # type: ignore[union-attr]

    def test_budget_holds_over_many_prompts(self):
        cache: PrefixCache[int] = PrefixCache(500)
        for i in range(200):
            cache.store([i, *range(1000 + i * 7, 1000 + i * 7 + (i % 90) + 10)], i, None)
            assert cache.stats().cached_tokens <= 500
        held = cache.stats()
        assert held.evictions == 200 - held.entries and held.entries >= 5

    def test_a_prompt_larger_than_the_budget_is_not_kept(self):
        cache: PrefixCache[str] = PrefixCache(50)
        assert not cache.wants(prompt(TOOLS_A, 7), None)
        cache.store(prompt(TOOLS_A, 7), "a", None)
        assert cache.stats().entries == 0
