"""Pydantic models of the OpenAI Responses wire format (the function-calling subset we serve)."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal, Union

from hammer.server.protocol import InvalidToolCall, Metadata, OmitsUnsetExtensions, ServiceTier, _Model, _Request, only
from pydantic import AfterValidator, BaseModel, Discriminator, Field, Tag


class InputTextPart(_Model):
    type: Literal["input_text", "output_text"]
    text: str


TextContent = Union[str, list[InputTextPart]]


class MessageItem(_Model):
    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: TextContent


class FunctionCallItem(_Model):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None


class FunctionCallOutputItem(_Model):
    type: Literal["function_call_output"]
    call_id: str
    output: TextContent


def _item_kind(value: Any) -> str | None:
    kind = value.get("type", "message") if isinstance(value, dict) else getattr(value, "type", None)
    return {"message": "Message", "function_call": "FunctionCall",
            "function_call_output": "FunctionCallOutput"}.get(kind) if isinstance(kind, str) else None


# Capitalised tags: ``hammer.server.errors.param_path`` leaves them out, so a bad item reads ``input[2].call_id``.
# A message item may omit ``type`` (the SDK's EasyInputMessage), so the tag is picked by a function.
InputItem = Annotated[Union[Annotated[MessageItem, Tag("Message")], Annotated[FunctionCallItem, Tag("FunctionCall")],
                            Annotated[FunctionCallOutputItem, Tag("FunctionCallOutput")]],
                      Discriminator(_item_kind, custom_error_type="invalid_item",
                                    custom_error_message="an item's type must be 'message', 'function_call' or "
                                                         "'function_call_output'")]


class FunctionTool(_Model):
    type: Literal["function"]
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamedFunctionChoice(_Model):
    type: Literal["function"]
    name: str


ToolChoice = Union[Literal["none", "auto", "required"], NamedFunctionChoice]


class TextFormat(_Model):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(_Model):
    format: TextFormat | None = None


def _no_reasoning(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value and any(v is not None for v in value.values()):
        raise ValueError("the model does not reason (accepted: null, {}, or only null settings)")
    return value


class StreamOptions(_Model):
    include_obfuscation: bool = True  # padding against length side channels: nothing to pad on this wire


class ResponsesRequest(_Request):
    model: str
    # The list first: a bad item's error then names it (``input[2].call_id``), not the string branch.
    input: list[InputItem] | str | None = None
    instructions: str | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    text: TextConfig | None = None
    metadata: Metadata | None = None
    user: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    store: bool = True
    previous_response_id: str | None = None
    # Hints that ask for no behaviour here (see ChatCompletionRequest).
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    # OpenAI parameters this server cannot honour: a 400 naming them unless they ask for nothing.
    service_tier: ServiceTier = None
    include: Annotated[list[str] | None, only(None, [], why="no additional output data can be included")] = None
    truncation: Annotated[Literal["auto", "disabled"] | None, only(
        None, "disabled", why="input that does not fit the context is refused, never truncated")] = None
    reasoning: Annotated[dict[str, Any] | None, AfterValidator(_no_reasoning)] = None
    background: Annotated[bool | None, only(None, False, why="responses are generated in the foreground")] = None
    max_tool_calls: Annotated[int | None, only(None, why="the number of tool calls cannot be capped here")] = None
    top_logprobs: Annotated[int | None, only(None, why="logprobs are served by the chat completions API")] = None
    conversation: Annotated[Any, only(None, why="conversations are not stored here; use previous_response_id")] = None
    prompt: Annotated[Any, only(None, why="stored prompt templates are not supported")] = None


# -- the Response object ---------------------------------------------------------------------------

class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)


class OutputMessage(BaseModel):
    type: Literal["message"] = "message"
    id: str
    role: Literal["assistant"] = "assistant"
    status: Literal["in_progress", "completed", "incomplete"] = "completed"
    content: list[OutputText]


class OutputFunctionCall(BaseModel):
    type: Literal["function_call"] = "function_call"
    id: str
    call_id: str
    name: str
    arguments: str
    status: Literal["in_progress", "completed", "incomplete"] = "completed"


OutputItem = Annotated[Union[OutputMessage, OutputFunctionCall], Field(discriminator="type")]


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens"]


class ResponseObject(OmitsUnsetExtensions):
    id: str
    object: Literal["response"] = "response"
    created_at: int = Field(default_factory=lambda: int(time.time()))
    status: Literal["in_progress", "completed", "incomplete"]
    error: None = None
    incomplete_details: IncompleteDetails | None = None
    model: str
    output: list[OutputItem] = Field(default_factory=list)
    usage: ResponseUsage | None = None
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    metadata: dict[str, str] = Field(default_factory=dict)
    parallel_tool_calls: bool
    previous_response_id: str | None = None
    store: bool = True
    temperature: float
    top_p: float
    text: dict[str, Any]
    tool_choice: str | dict[str, Any]
    tools: list[dict[str, Any]]
    user: str | None = None
    #: Our extension, as on chat's message: calls that failed parsing or their schema; absent when none.
    invalid_tool_calls: list[InvalidToolCall] | None = None


class DeletedResponse(BaseModel):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True
