"""The prefix cache's policy alone: longest match, replacement of the entry a prompt grew from, LRU under a budget."""

from __future__ import annotations

from hammer.server.backends.prefix_cache import PrefixCache

TOOLS_A = list(range(100, 200))  # a tool set's prompt prefix: 100 tokens
TOOLS_B = list(range(300, 400))


def prompt(tools: list[int], question: int) -> list[int]:
    return [1, *tools, question, question + 1]


class TestLookup:
    def test_empty_cache_is_a_miss(self):
        cache = PrefixCache(1000, range(4, 8))
        assert cache.lookup(prompt(TOOLS_A, 7)) is None
        assert cache.stats().misses == 1 and cache.stats().hits == 0

    def test_longest_matching_entry_wins_and_counts_reused_tokens(self):
        cache = PrefixCache(1000, range(4, 8))
        short, _ = cache.store([1, *TOOLS_A[:50]], None)
        long, _ = cache.store(prompt(TOOLS_A, 7), None)
        match = cache.lookup(prompt(TOOLS_A, 9))
        assert match is not None and match.seq_id == long and match.seq_id != short
        assert match.length == 101  # BOS and the tools; the question differs
        assert cache.stats().reused_tokens == 101 and cache.stats().hits == 1

    def test_the_last_token_is_never_reused(self):
        """Sampling needs the logits of the prompt's last token: it is evaluated even on a full match."""
        cache = PrefixCache(1000, range(4, 8))
        cache.store(prompt(TOOLS_A, 7), None)
        match = cache.lookup(prompt(TOOLS_A, 7))
        assert match is not None and match.length == len(prompt(TOOLS_A, 7)) - 1

    def test_a_short_common_start_is_a_miss(self):
        cache = PrefixCache(1000, range(4, 8), min_reuse=16)
        cache.store(prompt(TOOLS_A, 7), None)
        assert cache.lookup([1, *TOOLS_A[:10], 999, 998]) is None


class TestStore:
    def test_a_prompt_that_grew_from_an_entry_replaces_it(self):
        cache = PrefixCache(1000, range(4, 8))
        first, _ = cache.store(prompt(TOOLS_A, 7), None)
        match = cache.lookup(prompt(TOOLS_A, 9))
        second, cleared = cache.store(prompt(TOOLS_A, 9), match)
        assert cleared == [first] and second == first  # its KV is cleared, then refilled
        assert cache.stats().entries == 1 and cache.stats().cached_tokens == len(prompt(TOOLS_A, 9))

    def test_a_prompt_sharing_only_a_little_is_a_new_entry(self):
        cache = PrefixCache(1000, range(4, 8), min_reuse=4)
        first, _ = cache.store(prompt(TOOLS_A, 7), None)
        match = cache.lookup([1, *TOOLS_A[:10], *TOOLS_B])
        assert match is not None and match.length == 11
        second, cleared = cache.store([1, *TOOLS_A[:10], *TOOLS_B], match)
        assert cleared == [] and second != first and cache.stats().entries == 2

    def test_least_recently_used_goes_first_under_the_budget(self):
        cache = PrefixCache(250, range(4, 8))
        a, _ = cache.store(prompt(TOOLS_A, 7), None)
        b, _ = cache.store(prompt(TOOLS_B, 7), None)
        assert cache.lookup(prompt(TOOLS_A, 9)) is not None  # A is now the most recently used
        c, cleared = cache.store([2, *range(500, 600)], None)
        assert cleared == [b]
        assert cache.stats().cached_tokens <= 250 and cache.stats().evictions == 1
        assert cache.lookup(prompt(TOOLS_B, 9)) is None
        assert cache.lookup(prompt(TOOLS_A, 9)).seq_id == a  # type: ignore[union-attr]

    def test_budget_holds_over_many_prompts(self):
        cache = PrefixCache(500, range(10, 42))
        for i in range(200):
            seq_id, _ = cache.store([i, *range(1000 + i * 7, 1000 + i * 7 + (i % 90) + 10)], None)
            assert seq_id is not None
            assert cache.stats().cached_tokens <= 500
        held = cache.stats()
        assert held.entries <= 32 and held.evictions == 200 - held.entries

    def test_ids_are_reused_only_after_eviction(self):
        cache = PrefixCache(10_000, range(4, 6))
        a, _ = cache.store(prompt(TOOLS_A, 1), None)
        b, _ = cache.store(prompt(TOOLS_B, 1), None)
        c, cleared = cache.store([3, *range(700, 800)], None)
        assert {a, b} == {4, 5} and cleared == [a] and c == a

    def test_a_prompt_larger_than_the_budget_is_not_kept(self):
        cache = PrefixCache(50, range(4, 8))
        assert cache.store(prompt(TOOLS_A, 7), None) == (None, [])
        assert cache.stats().entries == 0

    def test_evict_oldest_and_clear(self):
        cache = PrefixCache(1000, range(4, 8))
        a, _ = cache.store(prompt(TOOLS_A, 7), None)
        b, _ = cache.store(prompt(TOOLS_B, 7), None)
        assert cache.evict_oldest() == a
        assert cache.clear() == [b]
        assert cache.evict_oldest() is None
        assert cache.stats().cached_tokens == 0
