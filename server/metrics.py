"""Prometheus metrics, one registry per app (no module-level state)."""

from __future__ import annotations

from typing import Callable, Iterator

from hammer.server.backends.base import CacheStats
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("hammer_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=r)
        self.latency = Histogram("hammer_request_latency_seconds", "HTTP request latency by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        # Two clocks, because in tool mode nothing reaches the client until a whole call has been
        # generated and validated: the engine's first token says how fast the prompt was evaluated,
        # the first call says when a tool-calling client can act.
        self.ttft = Histogram("hammer_time_to_first_token_seconds",
                              "From request start to the engine's first generated token (every mode)",
                              buckets=LATENCY_BUCKETS, registry=r)
        self.time_to_first_call = Histogram(
            "hammer_time_to_first_call_seconds",
            "From request start to the first validated tool call sent to the client (tool mode)",
            buckets=LATENCY_BUCKETS, registry=r)
        self.tool_outcomes = Counter(
            "hammer_tool_call_outcomes",
            "Outcome of tool-enabled completions: calls, refusal, invalid (output or a call that failed "
            "parsing or schema validation), truncated (max_tokens hit inside the output), answer (no new "
            "call after tool results: the model answered the user in a second pass)",
            ["outcome"], registry=r)
        self.calls_dropped = Counter(
            "hammer_duplicate_calls_dropped",
            "Calls not returned: repeated (made and answered since the last user message; --loop-guard) or "
            "duplicate (the same call twice in one response; --dedupe-calls)", ["reason"], registry=r)
        self.tool_calls = Counter("hammer_tool_calls_returned", "Validated tool calls returned", registry=r)
        self.prompt_tokens = Counter("hammer_prompt_tokens", "Prompt tokens processed", registry=r)
        self.completion_tokens = Counter("hammer_completion_tokens", "Tokens generated", registry=r)
        self.queue_depth = Gauge("hammer_queue_depth", "Requests waiting for the model", registry=r)
        self.running = Gauge("hammer_running_generations", "Generations in progress", registry=r)

    def track_prefix_cache(self, read: Callable[[], CacheStats | None]) -> None:
        """Export the backend's prefix cache counters, read from it at each scrape."""
        self.registry.register(_PrefixCacheCollector(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _PrefixCacheCollector(Collector):
    def __init__(self, read: Callable[[], CacheStats | None]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        stats = self._read()
        if stats is None:  # the model is not loaded (yet, or any more)
            return
        yield CounterMetricFamily("hammer_prefix_cache_hits", "Prompts that started from a cached prefix",
                                  value=stats.hits)
        yield CounterMetricFamily("hammer_prefix_cache_misses", "Prompts evaluated from the start",
                                  value=stats.misses)
        yield CounterMetricFamily("hammer_prefix_cache_reused_tokens",
                                  "Prompt tokens copied from the cache instead of evaluated", value=stats.reused_tokens)
        yield CounterMetricFamily("hammer_prefix_cache_evictions", "Cached prefixes dropped (budget or KV full)",
                                  value=stats.evictions)
        yield GaugeMetricFamily("hammer_prefix_cache_tokens",
                                "Tokens the cached prefixes hold (at most --cache-tokens)", value=stats.cached_tokens)
        yield GaugeMetricFamily("hammer_prefix_cache_entries", "Cached prefixes", value=stats.entries)
