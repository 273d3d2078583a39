"""Pydantic models of the Anthropic Messages wire format (the text and client-tool subset we serve).

What the server cannot honour is refused with a 400 naming it, never ignored: image, document and
thinking blocks, server tools (``web_search_…``), extended ``thinking``, ``top_k``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from hammer.server.protocol import InvalidToolCall, OmitsUnsetExtensions, _Model, _Request, only
from pydantic import AfterValidator, BaseModel, BeforeValidator, Discriminator, Field, Tag


def _why_unsupported(kind: str) -> str:
    """Why a content block type is refused, for the 400's message.

    >>> _why_unsupported("image"), _why_unsupported("web_search_tool_result")
    ('the model reads text only', 'this server runs no server tools')
    """
    if kind in ("image", "document", "search_result", "container_upload"):
        return "the model reads text only"
    if kind in ("thinking", "redacted_thinking"):
        return "the model does not think before answering (no extended thinking)"
    if kind in ("server_tool_use", "mcp_tool_use", "mcp_tool_result") or kind.endswith("_tool_result"):
        return "this server runs no server tools"
    if kind == "tool_use":
        return "tool_use blocks belong in assistant messages"
    if kind == "tool_result":
        return "tool_result blocks belong in user messages"
    return "it is not a content block type this server knows"


def blocks(*accepted: str, where: str) -> BeforeValidator:
    """A content block whose type is not ``accepted`` here: a 400 that names the type and says why.

    >>> from pydantic import TypeAdapter, ValidationError
    >>> try:
    ...     TypeAdapter(Annotated[dict, blocks("text", where="in system")]).validate_python({"type": "image"})
    ... except ValidationError as error:
    ...     print(error.errors()[0]["msg"])
    Value error, 'image' blocks are not supported in system: the model reads text only (accepted: 'text')
    """
    def check(value: Any) -> Any:
        kind = value.get("type") if isinstance(value, dict) else None
        if isinstance(kind, str) and kind not in accepted:
            raise ValueError(f"{kind!r} blocks are not supported {where}: {_why_unsupported(kind)} "
                             f"(accepted: {', '.join(map(repr, accepted))})")
        return value
    return BeforeValidator(check)


def _by_type(tags: dict[str, str], error: str) -> Discriminator:
    """Pick a union member by the value's ``type``; an unknown type is one error in our words.

    Capitalised tags: ``hammer.server.errors.param_path`` leaves them out (``messages[0].content[1].text``).
    """
    def tag(value: Any) -> str | None:
        kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        return tags.get(kind) if isinstance(kind, str) else None
    return Discriminator(tag, custom_error_type="invalid_type", custom_error_message=error)


def _text_or_blocks(value: Any) -> str | None:
    return "Text" if isinstance(value, str) else "Blocks" if isinstance(value, list) else None


def text_or(block: Any) -> Any:
    """A string, or a list of ``block``: only the member the value's JSON type picks reports errors."""
    members = Union[Annotated[str, Tag("Text")], Annotated[list[block], Tag("Blocks")]]  # type: ignore[valid-type]
    return Annotated[members,
                     Discriminator(_text_or_blocks, custom_error_type="invalid_content",
                                   custom_error_message="must be a string or an array of content blocks")]


_BLOCKS = _by_type({"text": "Text", "tool_use": "ToolUse", "tool_result": "ToolResult"},
                   "a content block needs a 'type'")


# Accepted and needing nothing here: prompt prefixes are cached for every request (``--cache-tokens``).
# Blocks take it too, as a field they ignore like every field they do not know (``_Model``): declared
# on them it made schemathesis (tests/server/test_fuzz.py) fail to generate from the OpenAPI document.
CacheControl = dict[str, Any]


class TextBlock(_Model):
    type: Literal["text"]
    text: str


class ToolUseBlock(_Model):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


ResultText = Annotated[TextBlock, blocks("text", where="in a tool_result")]
ResultContent = text_or(ResultText)


class ToolResultBlock(_Model):
    type: Literal["tool_result"]
    tool_use_id: str
    content: ResultContent | None = None
    #: The tool failed: the model reads the content as an error report.
    is_error: bool = False


UserBlock = Annotated[Union[Annotated[TextBlock, Tag("Text")], Annotated[ToolResultBlock, Tag("ToolResult")]],
                      _BLOCKS, blocks("text", "tool_result", where="in a user message")]
AssistantBlock = Annotated[Union[Annotated[TextBlock, Tag("Text")], Annotated[ToolUseBlock, Tag("ToolUse")]],
                           _BLOCKS, blocks("text", "tool_use", where="in an assistant message")]
UserContent = text_or(UserBlock)
AssistantContent = text_or(AssistantBlock)


class UserTurn(_Model):
    role: Literal["user"]
    content: UserContent


class AssistantTurn(_Model):
    role: Literal["assistant"]
    content: AssistantContent


InputMessage = Annotated[Union[UserTurn, AssistantTurn], Field(discriminator="role")]
SystemText = Annotated[TextBlock, blocks("text", where="in system")]
SystemContent = text_or(SystemText)


def _client_tool(kind: str | None) -> str | None:
    if kind not in (None, "custom"):
        raise ValueError(f"server tools ({kind!r}) are not available here; declare client tools with name, "
                         "description and input_schema (type 'custom' or none)")
    return kind


class ToolDefinition(_Model):
    # First: a server tool (``web_search_20250305``…) is refused for its type, before its missing input_schema.
    type: Annotated[str | None, AfterValidator(_client_tool)] = None
    name: str
    description: str | None = None
    input_schema: dict[str, Any]
    strict: bool | None = None
    cache_control: CacheControl | None = None


class ToolChoiceAuto(_Model):
    type: Literal["auto"]
    disable_parallel_tool_use: bool = False


class ToolChoiceAny(_Model):
    type: Literal["any"]
    disable_parallel_tool_use: bool = False


class ToolChoiceTool(_Model):
    type: Literal["tool"]
    name: str
    disable_parallel_tool_use: bool = False


class ToolChoiceNone(_Model):
    type: Literal["none"]


ToolChoice = Annotated[Union[Annotated[ToolChoiceAuto, Tag("Auto")], Annotated[ToolChoiceAny, Tag("Any")],
                             Annotated[ToolChoiceTool, Tag("Tool")], Annotated[ToolChoiceNone, Tag("NoTool")]],
                       _by_type({"auto": "Auto", "any": "Any", "tool": "Tool", "none": "NoTool"},
                                "tool_choice's type must be 'auto', 'any', 'tool' or 'none'")]


def _no_thinking(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value not in (None, {"type": "disabled"}):
        raise ValueError('extended thinking is not supported: the model does not think before answering '
                         '(accepted: null, {"type": "disabled"})')
    return value


class MessagesMetadata(_Request):
    user_id: str | None = Field(default=None, max_length=256)


class OutputFormat(_Model):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(_Request):
    #: Structured output: the text answer is decoded under this JSON Schema (chat's ``response_format``).
    format: OutputFormat | None = None
    effort: Annotated[str | None, only(None, why="the model has one effort level")] = None


class _Conversation(_Request):
    """What ``POST /v1/messages`` and ``POST /v1/messages/count_tokens`` share: the prompt."""

    model: str
    messages: list[InputMessage] = Field(min_length=1)
    system: SystemContent | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Annotated[dict[str, Any] | None, AfterValidator(_no_thinking)] = None
    output_config: OutputConfig | None = None
    cache_control: CacheControl | None = None


class CountTokensRequest(_Conversation):
    pass


class MessagesRequest(_Conversation):
    max_tokens: int = Field(ge=1)
    # Not given: the model's recommended sampling, as on chat completions. Anthropic's range is 0 to 1.
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: Annotated[int | None, only(None, why="top_k sampling is not available here; use temperature or "
                                                "top_p")] = None
    # At most 4, as chat's stop: each is matched against every generated token.
    stop_sequences: Annotated[list[str], Field(max_length=4)] | None = None
    metadata: MessagesMetadata | None = None
    stream: bool = False
    # A label that asks for nothing: this server has one processing tier.
    service_tier: Literal["auto", "standard_only"] | None = None


# -- the message ----------------------------------------------------------------------------------

class TextContent(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ToolUseContent(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


ContentBlock = Annotated[Union[TextContent, ToolUseContent], Field(discriminator="type")]
StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "model_context_window_exceeded"]


class MessageUsage(BaseModel):
    input_tokens: int
    output_tokens: int


class MessageObject(OmitsUnsetExtensions):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[ContentBlock] = Field(default_factory=list)
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    usage: MessageUsage
    #: Our extension, as on chat's message: calls that failed parsing or their schema; absent when none.
    invalid_tool_calls: list[InvalidToolCall] | None = None


class CountTokensResponse(BaseModel):
    input_tokens: int


class AnthropicErrorBody(BaseModel):
    type: str
    message: str


class AnthropicError(BaseModel):
    type: Literal["error"] = "error"
    error: AnthropicErrorBody
