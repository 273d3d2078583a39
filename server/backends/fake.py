"""A scripted backend for unit tests of serving logic (never the only test of a feature)."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Mapping, Sequence

from hammer.server.backends.base import Backend, Chunk, GenerationRequest, ModelInfo, TokenLogprob
from hammer.server.chat_template import render_chat_template
from hammer.server.settings import Settings


class FakeBackend(Backend):
    """Replies with the scripted texts in turn, one character per token; records each request."""

    def __init__(self, settings: Settings, replies: Sequence[str] = ("Hello!",), delay: float = 0.0) -> None:
        self._settings = settings
        self.replies = list(replies)
        self._delay = delay
        self.requests: list[GenerationRequest] = []

    async def start(self) -> ModelInfo:
        return ModelInfo(self._settings.served_model_name or "fake", self._settings.n_ctx)

    def count_tokens(self, prompt: str, plain_texts: Sequence[str] = ()) -> int:
        return len(prompt) // 4 + 1

    def chat_prompt(self, messages: Sequence[Mapping[str, Any]]) -> str:
        return render_chat_template(None, messages)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        self.requests.append(request)
        reply = self.replies[(len(self.requests) - 1) % len(self.replies)]
        text = reply[: request.params.max_tokens]
        for char in text:
            if self._delay:
                await asyncio.sleep(self._delay)
            # A made-up logprob per character, with the asked number of alternatives.
            top = request.params.logprobs
            logprobs = () if top is None else (TokenLogprob(char, -0.25, tuple(char.encode()),
                                                            tuple(("?", -2.0, (63,)) for _ in range(top))),)
            yield Chunk(char, logprobs=logprobs)
        yield Chunk("", "length" if len(text) < len(reply) else "stop", len(text))
