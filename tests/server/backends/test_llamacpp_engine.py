"""The batching engine on the real embedded model: concurrent generations give what they give alone,
a generation that is abandoned frees its sequence, the prefix cache keeps its budget and changes no
result, and memory stays bounded over a long run."""

from __future__ import annotations

import asyncio
import io
import json
import resource
import time
import zipfile
from typing import Any

import numpy as np
import pytest
from hammer.server.backends import llamacpp_sampler
from hammer.server.backends.base import GenerationRequest, OutputConstraint, SamplingParams
from hammer.server.backends.llamacpp import LlamaCppBackend
from hammer.server.backends.llamacpp_sampler import SequenceSampler
from hammer.server.constraints import calls_schema, plan_tools
from hammer.server.grammar import SchemaLimits
from hammer.server.protocol import FunctionDefinition, Tool
from hammer.server.settings import Settings

from hammer.prompt_format import render_prompt

pytestmark = pytest.mark.slow

WEATHER = FunctionDefinition(name="get_weather", description="Current weather for a city", parameters={
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string",
                                                                           "enum": ["celsius", "fahrenheit"]}},
    "required": ["city"]})
STOCK = FunctionDefinition(name="get_stock_price", description="Latest price of a stock by its ticker symbol",
                           parameters={"type": "object", "properties": {"ticker": {"type": "string"}},
                                       "required": ["ticker"]})
EMAIL = FunctionDefinition(name="send_email", description="Send an email", parameters={
    "type": "object", "properties": {"to": {"type": "string"}, "subject": {"type": "string"}},
    "required": ["to", "subject"]})


def tool_request(functions: list[FunctionDefinition], question: str, max_tokens: int = 200) -> GenerationRequest:
    prompt = render_prompt([f.model_dump() for f in functions], [{"role": "user", "content": question}])
    plan = plan_tools([Tool(type="function", function=f) for f in functions], "required", True, 8, SchemaLimits())
    return GenerationRequest(prompt, SamplingParams(max_tokens=max_tokens, temperature=0),
                             OutputConstraint(calls_schema(plan, 4, 64), "```\n", "\n```"))


def chat_request(backend: LlamaCppBackend, question: str, max_tokens: int = 40) -> GenerationRequest:
    return GenerationRequest(backend.chat_prompt([{"role": "user", "content": question}]),
                             SamplingParams(max_tokens=max_tokens, temperature=0))


async def collect(backend: LlamaCppBackend, request: GenerationRequest) -> tuple[str, str | None]:
    text, finish = "", None
    async for chunk in backend.generate(request):
        text += chunk.text
        finish = chunk.finish_reason or finish
    return text, finish


class Served:
    """A backend on its own event loop (one per module, as in the server)."""

    def __init__(self, **settings: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.backend = LlamaCppBackend(Settings(**settings))
        self.loop.run_until_complete(self.backend.start())

    def run(self, *requests: GenerationRequest) -> list[tuple[str, str | None]]:
        """The requests at once."""
        async def all_at_once() -> list[tuple[str, str | None]]:
            return list(await asyncio.gather(*(collect(self.backend, r) for r in requests)))
        return self.loop.run_until_complete(all_at_once())

    def close(self) -> None:
        self.loop.run_until_complete(self.backend.close())
        self.loop.close()


@pytest.fixture(scope="module")
def served():
    # Flash attention off: llama.cpp's CPU flash attention takes another kernel for a sequence decoded
    # alone than for sequences decoded together (logits differ by up to 0.6, docs/llamacpp.md); without
    # it this model is batch-invariant, so a batched generation must equal the same one alone and any
    # difference is a scheduling bug. TestFlashAttention covers the default.
    served = Served(n_ctx=2048, parallel=4, cache_tokens=2048, flash_attn=False)
    yield served
    served.close()


def requests(backend: LlamaCppBackend) -> list[tuple[GenerationRequest, str]]:
    """Mixed tool sets and grammars, and plain chat, each with a word its answer must hold: what several
    clients send at once."""
    return [(tool_request([WEATHER, EMAIL], "What's the weather in Paris?"), "Paris"),
            (tool_request([STOCK], "Get the stock price for the ticker IBM."), "IBM"),
            (tool_request([WEATHER, EMAIL], "Email bob@example.com with the subject Lunch."), ""),  # the model errs
            (chat_request(backend, "Name three colors."), ""),
            (tool_request([STOCK], "How much is one share of MSFT?"), "MSFT"),
            (tool_request([WEATHER, EMAIL], "Is it raining in Tokyo?"), "Tokyo")]


def first_call(text: str) -> dict[str, Any]:
    calls = json.loads(text.strip("`\n"))  # a complete call list: not cut short or garbled by a neighbour
    return calls[0]


def assert_answers_its_own(request: GenerationRequest, word: str, text: str) -> None:
    """A call list that calls a tool of this request's own prompt (no neighbour's grammar or tools) and,
    where the question fixes it, holds the question's word; plain chat answers with some text."""
    if request.constraint is None:
        assert text.strip()
        return
    call = first_call(text)
    assert f'"name": "{call["name"]}"' in request.prompt
    assert word in json.dumps(call)


class TestConcurrency:
    def test_concurrent_generations_match_one_at_a_time(self, served):
        batch = [request for request, _ in requests(served.backend)]
        for request in batch:  # the tool sets' prefixes cached, as both runs below then find them
            served.run(request)
        alone = [served.run(request)[0] for request in batch]
        together = served.run(*batch)  # six requests, four sequences: two wait, then join mid-way
        assert together == alone
        for (request, word), (text, finish) in zip(requests(served.backend), together):
            assert finish == "stop"
            assert_answers_its_own(request, word, text)
        assert len({text for text, _ in alone}) == len(alone)  # the requests really differ

    def test_running_sequences_share_each_decode_step_in_id_order(self, served, monkeypatch):
        """With a KV stream per sequence llama.cpp puts only consecutive, increasing sequence ids in one
        micro-batch (``split_equal``): a step listing them in another order computes each alone."""
        engine = served.backend.engine
        steps: list[list[int]] = []
        original = engine._decode

        def recording(batch):
            if all(batch.logits[i] for i in range(batch.n_tokens)):  # a decode step: one token a sequence
                steps.append([batch.seq_id[i][0] for i in range(batch.n_tokens)])
            return original(batch)
        monkeypatch.setattr(engine, "_decode", recording)
        batch = [request for request, _ in requests(served.backend)][:4]
        results = served.run(*batch)
        generated = sum(len(served.backend.tokenize(text)) for text, _ in results)
        assert all(ids == sorted(ids) for ids in steps)
        assert [0, 1, 2, 3] in steps  # four at once get the lowest ids: one micro-batch
        assert len(steps) < generated / 2  # tokens were decoded together, not one call each

    def test_a_cached_prefix_gives_the_calls_a_fresh_evaluation_gives(self):
        """The same calls, not always the same text: the tokens after a restored prefix are evaluated as
        a batch of fewer than 64 rows, for which llama.cpp's attention takes another kernel than for a
        whole prompt (llama-server's prompt cache has the same property)."""
        fresh = Served(n_ctx=2048, parallel=2, cache_tokens=0)
        try:
            expected = [fresh.run(request)[0] for request, _ in requests(fresh.backend)]
        finally:
            fresh.close()
        cached = Served(n_ctx=2048, parallel=2, cache_tokens=4096)
        try:
            for request, _ in requests(cached.backend):
                cached.run(request)
            hits = cached.backend.prefix_cache_stats().hits
            batch = [request for request, _ in requests(cached.backend)]
            again = [cached.run(request)[0] for request in batch]
            assert cached.backend.prefix_cache_stats().hits == hits + len(again)
        finally:
            cached.close()
        for request, (text, finish), (text_fresh, _) in zip(batch, again, expected):
            assert finish == "stop"
            if request.constraint is not None:
                assert first_call(text) == first_call(text_fresh)

    def test_an_abandoned_generation_frees_its_sequence_and_leaves_others_alone(self, served):
        backend = served.backend
        expected = served.run(tool_request([WEATHER, EMAIL], "What's the weather in Paris?"))[0]

        async def scenario() -> tuple[str, str | None]:
            story = backend.generate(chat_request(backend, "Write a long story about a dragon.", max_tokens=400))
            await anext(story)  # running now
            other = asyncio.ensure_future(collect(backend, tool_request([WEATHER, EMAIL],
                                                                        "What's the weather in Paris?")))
            await anext(story)
            await story.aclose()  # the client went away
            return await other

        assert served.loop.run_until_complete(scenario()) == expected
        deadline = time.monotonic() + 10
        while backend.engine.active() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backend.engine.active() == 0

    def test_more_requests_than_sequences_wait_and_all_finish(self, served):
        batch = [tool_request([STOCK], f"Price of {t}?") for t in ("AAPL", "IBM", "TSLA", "NVDA",
                                                                                   "AMZN", "META", "ORCL", "SAP")]
        results = served.run(*batch)
        assert all(finish == "stop" and text.startswith("```\n[") for text, finish in results)


class TestSampling:
    def test_tokens_tied_at_a_shortlists_cutoff_are_all_considered(self, served):
        # 31 forbidden tokens lead; 200 tie behind them, some allowed: masking the vocabulary takes
        # the allowed one with the lowest id, and so must the shortlist, whichever tied token the
        # partition happens to put in its 32nd place.
        vocab = served.backend.engine.vocab
        lower = [t for t in range(vocab.size) if vocab.piece(t).isalpha() and vocab.piece(t).islower()]
        upper = [t for t in range(vocab.size) if vocab.piece(t).isalpha() and vocab.piece(t).isupper()]
        sampler = SequenceSampler(vocab, SamplingParams(max_tokens=1, temperature=0), "root ::= [a-z]+")
        rng = np.random.default_rng(0)
        try:
            for _ in range(20):
                logits = np.zeros(vocab.size, dtype=np.float32)
                logits[rng.choice(upper, 31, replace=False)] = 10.0
                tied = np.concatenate([rng.choice(upper, 180, replace=False), rng.choice(lower, 20, replace=False)])
                logits[tied[logits[tied] == 0]] = 5.0
                assert sampler._best_allowed(logits) == sampler._pick(logits, grammar=True)
        finally:
            sampler.free()

    def test_the_grammar_shortlists_pick_what_masking_the_vocabulary_picks(self, monkeypatch):
        served = Served(n_ctx=2048, parallel=2, cache_tokens=0)
        masked = 0
        pick = SequenceSampler._pick

        def counted(self, logits, grammar):
            nonlocal masked
            masked += grammar
            return pick(self, logits, grammar)
        monkeypatch.setattr(SequenceSampler, "_pick", counted)
        try:
            batch = [request for request, _ in requests(served.backend) if request.constraint is not None]
            shortlisted = [served.run(request)[0] for request in batch]
            with_both, masked = masked, 0
            monkeypatch.setattr(llamacpp_sampler, "SHORTLISTS", (32,))
            assert [served.run(request)[0] for request in batch] == shortlisted
            assert masked > with_both  # the second list found tokens the first did not
            monkeypatch.setattr(llamacpp_sampler, "SHORTLISTS", ())
            assert [served.run(request)[0] for request in batch] == shortlisted
        finally:
            served.close()


class TestFlashAttention:
    def test_batched_generations_answer_their_own_questions(self):
        """With flash attention (the default) a batched generation may differ from the same one alone at
        a near-tie, but each still answers its own request with a complete call list."""
        served = Served(n_ctx=2048, parallel=4, cache_tokens=2048)
        try:
            cases = requests(served.backend)
            together = served.run(*(request for request, _ in cases))
        finally:
            served.close()
        for (request, word), (text, finish) in zip(cases, together):
            assert_answers_its_own(request, word, text)
            if request.constraint is not None:  # the plain chat may now run to its max_tokens
                assert finish == "stop"


class TestPrefixCache:
    def test_a_repeated_tool_set_reuses_its_prefix(self, served):
        backend = served.backend
        served.run(tool_request([STOCK, EMAIL], "Price of IBM?"))
        before = backend.prefix_cache_stats()
        served.run(tool_request([STOCK, EMAIL], "Email ann@example.com about the report."))
        after = backend.prefix_cache_stats()
        prompt_tokens = backend.count_tokens(tool_request([STOCK, EMAIL], "x").prompt)
        assert after.hits == before.hits + 1
        # Everything up to the question came from the cache.
        assert after.reused_tokens - before.reused_tokens > prompt_tokens - 30

    def test_the_cache_keeps_its_budget(self):
        served = Served(n_ctx=1024, parallel=2, cache_tokens=1000)
        try:
            # Tool sets that differ in more than half their prompt: each is an entry of its own.
            sets = [[FunctionDefinition(name=f"tool_{i}", description=f"Handles case {i} of {i * 7}. " * 40,
                                        parameters={"type": "object", "properties": {"x": {"type": "string"}}})]
                    for i in range(5)]
            for functions in sets + sets[:2]:
                served.run(tool_request(functions, "Use the tool.", max_tokens=12))
                stats = served.backend.prefix_cache_stats()
                assert stats.cached_tokens <= 1000
            assert stats.evictions >= 4 and stats.entries >= 1
            # The oldest sets were evicted by the time they came back: only the preamble all share was reused.
            shared = served.backend.tokenize(tool_request(sets[0], "x").prompt)
            other = served.backend.tokenize(tool_request(sets[1], "x").prompt)
            preamble = next(i for i, (a, b) in enumerate(zip(shared, other)) if a != b)
            assert stats.reused_tokens == stats.hits * preamble
        finally:
            served.close()


class TestPersistedCache:
    def test_a_restarted_server_starts_from_the_saved_prefix(self, tmp_path):
        request = tool_request([WEATHER, EMAIL], "What's the weather in Paris?")
        first = Served(n_ctx=2048, parallel=2, cache_tokens=4096, cache_dir=tmp_path)
        try:
            expected = first.run(request)[0]
        finally:
            first.close()  # writes the cache
        # A file whose state cannot be given memory of its own (here: empty) is skipped, not fatal.
        saved = next(tmp_path.rglob("prefix-0001.npz"))
        np.savez(saved.parent / "prefix-0000.npz", tokens=np.arange(40, dtype=np.int32), state=np.zeros(0, np.uint8))
        again = Served(n_ctx=2048, parallel=2, cache_tokens=4096, cache_dir=tmp_path)
        try:
            assert again.backend.prefix_cache_stats().entries == 1
            again.run(tool_request([WEATHER, EMAIL], "Is it raining in Tokyo?", max_tokens=1))
            stats = again.backend.prefix_cache_stats()
            assert stats.hits == 1 and stats.reused_tokens > 300
            assert first_call(again.run(request)[0][0]) == first_call(expected[0])
        finally:
            again.close()


    def test_a_file_claiming_more_than_the_models_state_allocates_nothing(self, tmp_path):
        first = Served(n_ctx=2048, parallel=1, cache_tokens=4096, cache_dir=tmp_path)
        try:
            first.run(tool_request([WEATHER], "What's the weather in Paris?", max_tokens=1))
        finally:
            first.close()
        folder = next(tmp_path.rglob("prefix-0001.npz")).parent
        # A header claiming 3 GiB in a file of a few hundred bytes (issue 22), and an honest 64 MiB
        # state for 40 tokens, far more than this model's state of 40 tokens.
        with zipfile.ZipFile(folder / "prefix-0000.npz", "w") as archive:
            archive.writestr("tokens.npy", _npy_header((40,), "<i4") + np.arange(40, dtype=np.int32).tobytes())
            archive.writestr("state.npy", _npy_header((3 << 30,), "|u1") + bytes(8))
        np.savez(folder / "prefix-0002.npz", tokens=np.arange(40, dtype=np.int32), state=np.zeros(64 << 20, np.uint8))
        peak = _peak_rss_mib()
        again = Served(n_ctx=2048, parallel=1, cache_tokens=4096, cache_dir=tmp_path)
        try:
            assert again.backend.prefix_cache_stats().entries == 1  # the real one still loads
            assert _peak_rss_mib() - peak < 512  # neither claim was given memory
        finally:
            again.close()


def _npy_header(shape: tuple[int, ...], descr: str) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": False, "shape": shape})
    return out.getvalue()


def _peak_rss_mib() -> float:
    """This process's highest RSS so far (VmHWM): a mapping filled and dropped during a start still shows."""
    for line in open("/proc/self/status").read().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/self/status")


class TestLongRun:
    def test_memory_stays_bounded(self, served):
        backend = served.backend

        def batch(i: int) -> list[GenerationRequest]:
            tools = [FunctionDefinition(name=f"lookup_{i % 7}", description=f"Looks up case {i % 7}. " * 30,
                                        parameters={"type": "object", "properties": {"q": {"type": "string"}}})]
            return [tool_request(tools, f"Look up item {i}-{k}.", max_tokens=24) for k in range(4)]

        for i in range(7):  # warm: buffers, piece cache, and the cache full (seven tool sets, 2048 tokens)
            served.run(*batch(i))
        assert backend.prefix_cache_stats().evictions > 0
        start = _rss_mib()
        for i in range(7, 21):
            served.run(*batch(i))
        assert _rss_mib() - start < 20  # a prompt's saved KV is ~7 MiB here: nothing piles up
        assert backend.engine.active() == 0
        assert backend.prefix_cache_stats().cached_tokens <= 2048


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20
