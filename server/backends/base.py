"""The small interface every inference backend implements."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Literal, Mapping, Sequence

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class OutputConstraint:
    """Generated text must be ``prefix + <JSON matching schema> + suffix``.

    The schema is already checked and bounded (``hammer.server.grammar.checked_schema``).
    """

    json_schema: dict[str, Any]
    prefix: str = ""
    suffix: str = ""


class RequestRejected(ValueError):
    """The engine refused a request as invalid (e.g. vLLM's own checks): the client's fault.

    Backends raise these backend-level errors; the serving layer maps them to HTTP, in one place.
    """


class ConstraintRejected(RequestRejected):
    """The engine cannot decode under this constraint (too large, unsupported): the client's fault."""


class EngineUnavailable(RuntimeError):
    """The engine cannot serve now (not loaded, stopped, failed to load): the client may retry later."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    #: Above 1: tokens seen in the last 64 are made less likely (llama.cpp's repeat penalty,
    #: vLLM's repetition_penalty). The server's own answer pass uses it; requests cannot set it.
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    #: (token id, bias added to its logit), as OpenAI's ``logit_bias``.
    logit_bias: tuple[tuple[int, float], ...] = ()
    #: None: no logprobs; k >= 0: each token's logprob and its k most likely alternatives.
    logprobs: int | None = None


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    params: SamplingParams
    constraint: OutputConstraint | None = None
    #: The client's texts as they appear verbatim in ``prompt``, in order (message contents,
    #: tools JSON): tokenized as plain text, so special-token strings in them stay text.
    plain_texts: tuple[str, ...] = ()
    #: The LoRA adapter to generate with (an id from ``ModelInfo.adapters``); None: the bare base model.
    adapter: str | None = None


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token as OpenAI's ``logprobs.content`` entries describe it."""

    token: str
    logprob: float
    bytes: tuple[int, ...]
    #: The most likely tokens at that position, as (token, logprob, bytes).
    top: tuple[tuple[str, float, tuple[int, ...]], ...] = ()


@dataclass(frozen=True)
class Chunk:
    """New text; the last chunk of a generation also carries why it ended and its token count."""

    text: str
    finish_reason: FinishReason | None = None
    completion_tokens: int = 0
    #: Logprobs of the tokens produced since the previous chunk (when the request asked for them).
    logprobs: tuple[TokenLogprob, ...] = ()
    #: The stop sequence that ended the generation (finish "stop"), if one did rather than the model.
    stop_sequence: str | None = None


@dataclass
class ModelInfo:
    name: str
    context_length: int
    details: dict[str, Any] = field(default_factory=dict)
    #: Most characters one token can stand for: a prompt longer than this many per context token
    #: cannot fit, and is refused without tokenizing it (tokenizing megabytes takes seconds).
    max_token_chars: int | None = None
    #: Token ids run from 0 to this (``logit_bias`` keys are checked against it).
    vocab_size: int | None = None
    #: The model's recommended ``temperature``/``top_p``, for requests that give none.
    sampling: dict[str, float] = field(default_factory=dict)
    #: LoRA adapters served on this base (``--lora``), by model id, each with its recommended sampling:
    #: a request whose ``model`` names one is generated with it.
    adapters: dict[str, dict[str, float]] = field(default_factory=dict)
    #: The id listed first in /v1/models: ``name``, or the adapter applied by default to the embedded model.
    default_model: str | None = None

    def model_ids(self) -> list[str]:
        """Every id a request may name, the default first."""
        first = self.default_model or self.name
        return [first] + [i for i in (self.name, *self.adapters) if i != first]


@dataclass(frozen=True)
class CacheStats:
    """What a backend's own prompt-prefix cache did (``Backend.prefix_cache_stats``): /metrics shows it."""

    hits: int
    misses: int
    #: Prompt tokens not evaluated because a cached prefix was restored instead.
    reused_tokens: int
    #: Tokens the entries hold in all (the budget's measure).
    cached_tokens: int
    entries: int
    evictions: int


class Backend(abc.ABC):
    """An inference engine: loads a model, renders chat templates, generates text.

    ``generate`` must stop its work promptly when the iterator is closed or the
    task awaiting it is cancelled (a client that disconnects frees its slot).
    """

    #: Generations the engine runs at once; the serving layer queues the rest.
    max_concurrency: int = 1

    @abc.abstractmethod
    async def start(self) -> ModelInfo: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model."""

    def health_error(self) -> str | None:
        """Why the engine cannot serve until a restart, or None; /health then answers 503."""
        return None

    @abc.abstractmethod
    def count_tokens(self, prompt: str, plain_texts: Sequence[str] = ()) -> int:
        """Tokens of ``prompt`` with ``plain_texts`` tokenized as plain text (see ``GenerationRequest``)."""

    @abc.abstractmethod
    def chat_prompt(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """Prompt text from the model's own chat template (requests without tools)."""

    def chat_template_source(self) -> str | None:
        """The model's chat template (Jinja source), or None for the built-in ChatML."""
        return None

    def prefix_cache_stats(self) -> CacheStats | None:
        """What the backend's own prompt-prefix cache did, if it keeps one (None: none, or not loaded)."""
        return None

    def check(self, request: GenerationRequest) -> None:  # noqa: B027 - optional hook
        """Build what ``generate`` will need for ``request`` (its grammar) and raise
        ``ConstraintRejected`` if the engine cannot take it; runs before the request waits for a slot."""

    @abc.abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncIterator[Chunk]: ...
