"""Pydantic models of the OpenAI chat-completions wire format (the subset we serve)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_serializer

# (issue 22) One stop sequence: bounded, as every user-controlled size is.
StopText = Annotated[str, StringConstraints(max_length=1024)]


class _Model(BaseModel):
    # Unknown fields inside messages and tools are ignored (SDKs echo back fields such as
    # ``refusal`` or ``annotations``); known ones must have their JSON type (strict: no "1" for 1,
    # no 0 for false, no 1.0 for an integer).
    model_config = ConfigDict(extra="ignore", strict=True)


class _Request(_Model):
    # A top-level parameter this server does not know is refused, as OpenAI refuses it
    # ("Unrecognized request argument supplied"): accepting and ignoring it would let the client
    # believe it got what it asked for.
    model_config = ConfigDict(extra="forbid", strict=True)


def only(*allowed: Any, why: str) -> AfterValidator:
    """An OpenAI parameter this server cannot honour: accepted only at values that ask for nothing.

    >>> from pydantic import TypeAdapter, ValidationError
    >>> adapter = TypeAdapter(Annotated[bool | None, only(None, False, why="not stored")])
    >>> adapter.validate_python(False), adapter.validate_python(None)
    (False, None)
    >>> try:
    ...     adapter.validate_python(True)
    ... except ValidationError as error:
    ...     print(error.errors()[0]["msg"])
    Value error, not stored (accepted: null, false)
    """
    def check(value: Any) -> Any:
        if value not in allowed:
            raise ValueError(f"{why} (accepted: {', '.join(json.dumps(a) for a in allowed)})")
        return value
    return AfterValidator(check)


def at_most_keys(limit: int, what: str) -> BeforeValidator:
    """A bound on an object's keys, counted before its items are validated, in our own words.

    >>> from pydantic import TypeAdapter, ValidationError
    >>> adapter = TypeAdapter(Annotated[dict[str, str], at_most_keys(2, "metadata")])
    >>> try:
    ...     adapter.validate_python({"a": "1", "b": "2", "c": "3"})
    ... except ValidationError as error:
    ...     print(error.errors()[0]["msg"])
    Value error, metadata has 3 keys; at most 2
    """
    def check(value: Any) -> Any:
        if isinstance(value, dict) and len(value) > limit:
            raise ValueError(f"{what} has {len(value)} keys; at most {limit}")
        return value
    return BeforeValidator(check)


Metadata = Annotated[dict[Annotated[str, StringConstraints(max_length=64)],
                          Annotated[str, StringConstraints(max_length=512)]], at_most_keys(16, "metadata")]
ServiceTier = Annotated[Literal["auto", "default", "flex", "scale", "priority"] | None,
                        only(None, "auto", "default", why="this server has one processing tier")]


class TextPart(_Model):
    type: Literal["text"]
    text: str


class NonTextPart(_Model):
    """An image, audio or file part: read by its type only, so the serving layer can refuse it with
    a 400 naming the part (this model reads text) instead of every union member's error."""

    type: Literal["image_url", "input_audio", "file"]


ContentPart = Annotated[Union[TextPart, NonTextPart], Field(discriminator="type")]
Content = Union[str, list[ContentPart], None]


class FunctionCall(_Model):
    name: str
    arguments: str = "{}"


class ToolCall(_Model):
    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCall


class SystemMessage(_Model):
    role: Literal["system", "developer"]
    content: Content
    name: str | None = None


class UserMessage(_Model):
    role: Literal["user"]
    content: Content
    name: str | None = None


class AssistantMessage(_Model):
    role: Literal["assistant"]
    content: Content = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None  # legacy single call
    name: str | None = None


class ToolMessage(_Model):
    role: Literal["tool"]
    content: Content
    tool_call_id: str


class FunctionMessage(_Model):
    """Legacy: the result of the assistant's ``function_call``."""

    role: Literal["function"]
    content: Content
    name: str


Message = Annotated[Union[SystemMessage, UserMessage, AssistantMessage, ToolMessage, FunctionMessage],
                    Field(discriminator="role")]


class FunctionDefinition(_Model):
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class Tool(_Model):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Model):
    name: str


class NamedToolChoice(_Model):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Union[Literal["none", "auto", "required"], NamedToolChoice]


class JsonSchemaFormat(_Model):
    name: str = "response"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Model):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(_Model):
    include_usage: bool = False


class ChatCompletionRequest(_Request):
    model: str
    messages: list[Message] = Field(min_length=1)
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    # Not given: the model's recommended sampling (GGUF metadata, generation_config.json), else 1.0.
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=1)
    # At most 4 stop sequences, as OpenAI: each is matched against every generated token.
    # (issue 22) Each at most 1024 characters: their matcher is built per request.
    stop: StopText | Annotated[list[StopText], Field(max_length=4)] | None = None
    seed: int | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    # Token id (as a string) → bias added to its logit, -100 (ban) to 100 (force).
    logit_bias: Annotated[dict[str, Annotated[float, Field(ge=-100, le=100)]],
                          at_most_keys(1024, "logit_bias")] | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    # Legacy function calling: mapped to tools / tool_choice, answered with ``message.function_call``.
    functions: list[FunctionDefinition] | None = Field(default=None, min_length=1)
    function_call: Literal["none", "auto"] | NamedFunction | None = None
    # Labels and hints that ask for no behaviour here: metadata tags a stored completion (none are
    # stored, so OpenAI too keeps nothing), prompt_cache_key routes to a cache (prompt prefixes
    # are cached for every request), safety_identifier is the newer `user`.
    metadata: Metadata | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    # OpenAI parameters this server cannot honour: a 400 naming them unless they ask for nothing.
    store: Annotated[bool | None, only(None, False, why="chat completions are not stored here; the Responses "
                                                          "API (POST /v1/responses) stores responses")] = None
    service_tier: ServiceTier = None
    reasoning_effort: Annotated[Any, only(None, why="the model does not reason")] = None
    verbosity: Annotated[Any, only(None, why="text verbosity is not adjustable here")] = None
    modalities: Annotated[list[str] | None, only(None, ["text"], why="only text is generated")] = None
    audio: Annotated[Any, only(None, why="only text is generated")] = None
    prediction: Annotated[Any, only(None, why="predicted outputs are not supported")] = None
    web_search_options: Annotated[Any, only(None, why="there is no web search here")] = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprobEntry(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    """Logprobs of the generated content tokens; tool calls and server-written text add none."""

    content: list[TokenLogprobEntry] | None = None


class InvalidToolCall(BaseModel):
    """A call the model wrote that failed parsing or schema validation; never in ``tool_calls``."""

    name: str | None = None
    arguments: str | None = None
    error: str


class OmitsUnsetExtensions(BaseModel):
    """A response model whose extension fields (ours, or legacy ones) are absent, not null, when unset:
    clients that validate the documented shape never see them."""

    omitted_when_none: ClassVar[tuple[str, ...]] = ("invalid_tool_calls",)

    @model_serializer(mode="wrap")
    def _omit_unset_extensions(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        for key in self.omitted_when_none:
            if data.get(key) is None:
                data.pop(key, None)
        return data


class ResponseMessage(OmitsUnsetExtensions):
    # ``invalid_tool_calls`` is our extension and ``function_call`` legacy: absent unless set.
    omitted_when_none: ClassVar[tuple[str, ...]] = ("invalid_tool_calls", "function_call")

    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None  # legacy requests (``functions``) only
    invalid_tool_calls: list[InvalidToolCall] | None = None


FinishReason = Literal["stop", "length", "tool_calls", "function_call"]


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: FinishReason
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None


class ToolCallDelta(BaseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: dict[str, str]


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    function_call: dict[str, str] | None = None  # legacy requests only
    invalid_tool_calls: list[InvalidToolCall] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "hammer-server"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
