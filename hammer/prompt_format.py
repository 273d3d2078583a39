"""The Hammer prompt format: tools and messages to prompt text, model text to calls.

Pure functions with no I/O, shared by serving and training so a model is served
with exactly the prompt it was trained on. ``render_calls`` and ``parse_calls``
are inverses: ``parse_calls(render_calls(calls)) == calls``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

PromptFormat = Literal["hammer-2.1", "hammer-1.0"]
PROMPT_FORMATS: tuple[PromptFormat, ...] = ("hammer-2.1", "hammer-1.0")

SYSTEM_PROMPT = "You are a helpful assistant."

_TASK_CORE = (
    "You are a tool calling assistant. In order to complete the user's request, you need to "
    "select one or more appropriate tools from the following tools and fill in the correct "
    "values for the tool parameters. Your specific tasks are:\n"
    "1. Make one or more function/tool calls to meet the request based on the question.\n"
    "2. If none of the function can be used, point it out and refuse to answer.\n"
    "3. If the given question lacks the parameters required by the function, also point it out.\n"
)
TASK_INSTRUCTION_V1 = _TASK_CORE
TASK_INSTRUCTION_V2_1 = _TASK_CORE + (
    "\n"
    "The following are characters that may interact with you\n"
    "1. user: Provides query or additional information.\n"
    "2. tool: Returns the results of the tool calling.\n"
)
FORMAT_INSTRUCTION = (
    "\n"
    "The output MUST strictly adhere to the following JSON format, and NO other text MUST be "
    "included.\n"
    "The example format is as follows. Please make sure the parameter type is correct. If no "
    "function call is needed, please directly output an empty list '[]'\n"
    "```\n"
    "[\n"
    '    {"name": "func_name1", "arguments": {"argument1": "value1", "argument2": "value2"}},\n'
    "    ... (more tool calls as required)\n"
    "]\n"
    "```\n"
)
FENCE = "```"


@dataclass(frozen=True)
class Call:
    """One function call as the model writes it: a name and its arguments."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments}


class HammerParseError(ValueError):
    """Model text that is not a Hammer list of calls."""


def hammer_tool(function: Mapping[str, Any]) -> dict[str, Any]:
    """One OpenAI ``function`` object as Hammer models saw tools in training and BFCL.

    Mirrors BFCL's Hammer handler exactly, including its quirks (a nested object's
    ``required`` marks go into its properties dict), so served prompts match the
    evaluated ones byte for byte.

    >>> hammer_tool({"name": "f", "description": "d", "parameters": {"type": "object",
    ...     "properties": {"x": {"type": "integer", "description": "n", "default": 3}},
    ...     "required": ["x"]}})
    {'name': 'f', 'description': 'd', 'parameters': {'x': {'type': 'integer', 'description': "ndefault is '3'", 'default': 3, 'required': True}}}
    """
    function = copy.deepcopy(dict(function))
    schema = function.get("parameters") or {}
    params: dict[str, Any] = schema.get("properties", {}) if isinstance(schema, dict) else {}
    for name, prop in params.items():
        if isinstance(prop, dict) and isinstance(prop.get("properties"), dict):
            nested = prop["properties"]
            for sub in prop.get("required", []):
                if isinstance(nested.get(sub), dict):
                    nested[sub]["required"] = True
            params[name] = nested
    for name in schema.get("required", []) if isinstance(schema, dict) else []:
        if isinstance(params.get(name), dict):
            params[name]["required"] = True
    for prop in params.values():
        if isinstance(prop, dict) and "default" in prop:
            prop["description"] = f"{prop.get('description', '')}default is '{prop['default']}'"
    return {
        "name": function.get("name", ""),
        "description": function.get("description", ""),
        "parameters": params,
    }


def render_tools(functions: Sequence[Mapping[str, Any]]) -> str:
    """The tools block's JSON: ``json.dumps`` with Python's defaults, as BFCL sends it."""
    return json.dumps([hammer_tool(f) for f in functions])


def render_calls(calls: Sequence[Call]) -> str:
    """Assistant text for calls: the training target and the history rendering.

    >>> render_calls([Call("f", {"x": 1})])
    '```\\n[{"name": "f", "arguments": {"x": 1}}]\\n```'
    >>> render_calls([])
    '```\\n[]\\n```'
    """
    body = json.dumps([c.to_json() for c in calls], ensure_ascii=False)
    return f"{FENCE}\n{body}\n{FENCE}"


def parse_calls(text: str) -> list[Call]:
    """Calls in model text; ``[]`` (no tool fits) gives an empty list.

    Accepts the bare fence, a ```` ```json ```` fence, or no fence, and a single
    call object; raises ``HammerParseError`` for anything else.

    >>> parse_calls('```\\n[{"name": "f", "arguments": {"x": 1}}]\\n```')
    [Call(name='f', arguments={'x': 1})]
    >>> parse_calls("[]")
    []
    """
    body = strip_fence(text)
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise HammerParseError(f"model output is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise HammerParseError("model output is not a JSON list of calls")
    return [_call_from_json(item) for item in data]


def strip_fence(text: str) -> str:
    """The text between a leading ```` ``` ```` (or ```` ```json ````) fence and its close."""
    body = text.strip()
    if body.startswith(FENCE):
        body = body[len(FENCE) :]
        if body.startswith("json"):
            body = body[len("json") :]
        if body.rstrip().endswith(FENCE):
            body = body.rstrip()[: -len(FENCE)]
    return body.strip()


def _call_from_json(item: Any) -> Call:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise HammerParseError(f"not a call object with a string 'name': {item!r:.200}")
    arguments = item.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            raise HammerParseError(f"arguments of {item['name']!r} are not JSON") from None
    if not isinstance(arguments, dict):
        raise HammerParseError(f"arguments of {item['name']!r} are not a JSON object")
    return Call(item["name"], arguments)


def render_prompt(
    functions: Sequence[Mapping[str, Any]],
    messages: Sequence[Mapping[str, Any]],
    prompt_format: PromptFormat = "hammer-2.1",
) -> str:
    """The full prompt, ending with ``<|im_start|>assistant\\n``.

    ``functions`` are OpenAI ``function`` objects; ``messages`` are OpenAI chat
    messages with string content (``system``/``developer`` become ``user`` turns,
    as BFCL does for Hammer; assistant ``tool_calls`` become the fenced list).
    """
    return render_prompt_parts(functions, messages, prompt_format)[0]


def render_prompt_parts(
    functions: Sequence[Mapping[str, Any]],
    messages: Sequence[Mapping[str, Any]],
    prompt_format: PromptFormat = "hammer-2.1",
) -> tuple[str, tuple[str, ...]]:
    """The prompt, and the texts inside it that are content rather than format, in order.

    A tokenizer must read those texts as plain text: only the ``<|im_start|>``/``<|im_end|>``
    markers around them are control tokens, whatever a message or tool description contains.

    >>> prompt, texts = render_prompt_parts([], [{"role": "user", "content": "hi<|im_end|>"}])
    >>> texts[-1], prompt.count("hi<|im_end|>")
    ('hi<|im_end|>', 1)
    """
    turns = [_turn(m) for m in messages]
    tools = render_tools(functions)
    if prompt_format == "hammer-1.0":
        query = "\n".join(content if role == "user" else f"{role}: {content}" for role, content in turns)
        content = _instruction_block(TASK_INSTRUCTION_V1, tools) + f"[BEGIN OF QUERY]\n{query}\n[END OF QUERY]\n\n"
        turns = []
    elif prompt_format == "hammer-2.1":
        content = _instruction_block(TASK_INSTRUCTION_V2_1, tools)
    else:
        raise ValueError(f"unknown prompt format {prompt_format!r}; expected one of {PROMPT_FORMATS}")
    history = "".join(f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in turns)
    prompt = (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
        f"<|im_start|>user\n{content}<|im_end|>\n{history}<|im_start|>assistant\n"
    )
    return prompt, (content, *(text for _, text in turns))


def _instruction_block(task_instruction: str, tools_json: str) -> str:
    return (
        f"[BEGIN OF TASK INSTRUCTION]\n{task_instruction}\n[END OF TASK INSTRUCTION]\n\n"
        f"[BEGIN OF AVAILABLE TOOLS]\n{tools_json}\n[END OF AVAILABLE TOOLS]\n\n"
        f"[BEGIN OF FORMAT INSTRUCTION]\n{FORMAT_INSTRUCTION}\n[END OF FORMAT INSTRUCTION]\n\n"
    )


def _turn(message: Mapping[str, Any]) -> tuple[str, str]:
    role = message["role"]
    content = message.get("content") or ""
    if role in ("system", "developer"):
        return "user", content
    if role == "assistant" and message.get("tool_calls"):
        calls = [
            Call(tc["function"]["name"], _arguments(tc["function"].get("arguments")))
            for tc in message["tool_calls"]
        ]
        return "assistant", render_calls(calls)
    return role, content


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        raw = json.loads(raw) if raw.strip() else {}
    return dict(raw or {})
