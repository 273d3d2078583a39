"""Tools + tool_choice + parallel_tool_calls → validated tools and the output's JSON Schema.

The output schema describes the whole Hammer list (``[{"name": const, "arguments": schema}]``);
each backend turns it into its own constrained-decoding mechanism.
"""

from __future__ import annotations

import copy
import enum
import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import jsonschema

from server.errors import InvalidRequest
from server.protocol import FunctionDefinition, NamedToolChoice, Tool, ToolChoice

TOOL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class ToolMode(str, enum.Enum):
    NONE = "none"
    AUTO = "auto"
    REQUIRED = "required"
    NAMED = "named"


@dataclass(frozen=True)
class ToolPlan:
    """What the request asks of tools, after validation."""

    mode: ToolMode
    functions: tuple[FunctionDefinition, ...]
    forced_name: str | None = None
    parallel: bool = True

    @property
    def by_name(self) -> dict[str, FunctionDefinition]:
        return {f.name: f for f in self.functions}


@dataclass(frozen=True)
class OutputConstraint:
    """Generated text must be ``prefix + <JSON matching schema> + suffix``."""

    json_schema: dict[str, Any]
    prefix: str = ""
    suffix: str = ""


def plan_tools(tools: Sequence[Tool] | None, tool_choice: ToolChoice | None, parallel: bool,
               max_tools: int, max_schema_depth: int) -> ToolPlan:
    """Validate tools and resolve ``tool_choice``; raises ``InvalidRequest`` with ``param`` set."""
    if not tools:
        if tool_choice not in (None, "none"):
            raise InvalidRequest("'tool_choice' is only allowed when 'tools' are specified.",
                                 param="tool_choice")
        return ToolPlan(ToolMode.NONE, ())
    if len(tools) > max_tools:
        raise InvalidRequest(f"Too many tools: {len(tools)} given, at most {max_tools} allowed.",
                             param="tools")
    functions = tuple(t.function for t in tools)
    seen: set[str] = set()
    for i, function in enumerate(functions):
        _check_function(function, f"tools[{i}].function", max_schema_depth)
        if function.name in seen:
            raise InvalidRequest(f"Duplicate tool name {function.name!r}.", param=f"tools[{i}].function.name")
        seen.add(function.name)
    if isinstance(tool_choice, NamedToolChoice):
        name = tool_choice.function.name
        if name not in seen:
            raise InvalidRequest(
                f"tool_choice names function {name!r}, which is not among the declared tools "
                f"({', '.join(sorted(seen))}).", param="tool_choice")
        return ToolPlan(ToolMode.NAMED, functions, forced_name=name, parallel=parallel)
    return ToolPlan(ToolMode(tool_choice or "auto"), functions, parallel=parallel)


def _check_function(function: FunctionDefinition, param: str, max_depth: int) -> None:
    if not TOOL_NAME.match(function.name):
        raise InvalidRequest(
            f"Invalid tool name {function.name!r}: use 1-64 characters from a-z, A-Z, 0-9, '_', '-', '.'.",
            param=f"{param}.name")
    schema = function.parameters
    problem = schema_error(json.dumps(schema, sort_keys=True))
    if problem is not None:
        raise InvalidRequest(f"Tool {function.name!r} has an invalid JSON Schema: {problem}",
                             param=f"{param}.parameters")
    if schema.get("type", "object") != "object":
        raise InvalidRequest(f"Tool {function.name!r}: 'parameters' must be a JSON Schema of type 'object'.",
                             param=f"{param}.parameters")
    if _depth(schema) > max_depth:
        raise InvalidRequest(f"Tool {function.name!r}: schema nests deeper than {max_depth} levels.",
                             param=f"{param}.parameters")


# Schemas up to this size are memoized (at most 1024 of them, so at most 64 MiB).
_MEMO_MAX_CHARS = 64 * 1024


def schema_error(schema_json: str) -> str | None:
    """Why a JSON Schema (as canonical JSON) is invalid, or None.

    Memoized: checking against the 2020-12 metaschema takes milliseconds, and agents send the same
    tools with every request.

    >>> schema_error('{"type": "object"}') is None, schema_error('{"type": 5}')[:20]
    (True, '5 is not valid under')
    """
    if len(schema_json) > _MEMO_MAX_CHARS:
        return _check_schema(schema_json)
    return _memoized_check_schema(schema_json)


@functools.lru_cache(maxsize=1024)
def _memoized_check_schema(schema_json: str) -> str | None:
    return _check_schema(schema_json)


def _check_schema(schema_json: str) -> str | None:
    try:
        jsonschema.Draft202012Validator.check_schema(json.loads(schema_json))
    except jsonschema.SchemaError as exc:
        return exc.message
    return None


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def calls_schema(plan: ToolPlan, max_calls: int, max_string_length: int) -> dict[str, Any]:
    """JSON Schema of the Hammer list of calls the plan allows.

    >>> from server.protocol import FunctionDefinition as F
    >>> s = calls_schema(ToolPlan(ToolMode.REQUIRED, (F(name="f"),), parallel=False), 8, 64)
    >>> s["minItems"], s["maxItems"], s["items"]["properties"]["name"]
    (1, 1, {'const': 'f'})
    """
    functions = [f for f in plan.functions if plan.mode != ToolMode.NAMED or f.name == plan.forced_name]
    calls = [
        {
            "type": "object",
            "properties": {
                "name": {"const": f.name},
                "arguments": decoding_schema(f.parameters, max_string_length),
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for f in functions
    ]
    return {
        "type": "array",
        "items": calls[0] if len(calls) == 1 else {"anyOf": calls},
        "minItems": 0 if plan.mode == ToolMode.AUTO else 1,
        "maxItems": max_calls if plan.parallel else 1,
    }


def decoding_schema(schema: Mapping[str, Any], max_string_length: int) -> dict[str, Any]:
    """A copy of ``schema`` tightened for generation so the model cannot loop or invent keys.

    Free strings get ``maxLength`` (a small model can repeat inside a string until
    ``max_tokens``); objects with declared properties get ``additionalProperties: false``.
    Validation still uses the tool's own schema.

    >>> decoding_schema({"type": "object", "properties": {"s": {"type": "string"}}}, 10)
    {'type': 'object', 'properties': {'s': {'type': 'string', 'maxLength': 10}}, 'additionalProperties': False}
    """
    return _tighten(copy.deepcopy(dict(schema)), max_string_length)


def _tighten(node: Any, max_len: int) -> Any:
    if isinstance(node, list):
        return [_tighten(v, max_len) for v in node]
    if not isinstance(node, dict):
        return node
    for key, value in node.items():
        if key in ("properties", "$defs", "definitions", "patternProperties"):
            node[key] = {k: _tighten(v, max_len) for k, v in value.items()} if isinstance(value, dict) else value
        elif key not in ("const", "enum", "default", "examples"):
            node[key] = _tighten(value, max_len)
    if node.get("type") == "string" and not {"enum", "const", "pattern", "format"} & node.keys():
        node["maxLength"] = min(node.get("maxLength", max_len), max_len)
    if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
        node["additionalProperties"] = False
    return node


def response_format_schema(kind: str, schema: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """JSON Schema for ``response_format``; ``None`` for plain text."""
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        try:
            jsonschema.Draft202012Validator.check_schema(dict(schema or {}))
        except jsonschema.SchemaError as exc:
            raise InvalidRequest(f"response_format has an invalid JSON Schema: {exc.message}",
                                 param="response_format.json_schema.schema") from None
        return dict(schema or {})
    return None


def argument_errors(function: FunctionDefinition, arguments: Mapping[str, Any]) -> str | None:
    """Why ``arguments`` violate the tool's schema, or ``None`` when they validate."""
    validator = jsonschema.Draft202012Validator(function.parameters)
    error = jsonschema.exceptions.best_match(validator.iter_errors(dict(arguments)))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{where + ': ' if where else ''}{error.message}"
