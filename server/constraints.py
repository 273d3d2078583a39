"""Tools + tool_choice + parallel_tool_calls → validated tools and the output's JSON Schema.

The output schema describes the whole Hammer list (``[{"name": const, "arguments": schema}]``);
each backend turns it into its own constrained-decoding mechanism.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import jsonschema
from hammer.server.errors import InvalidRequest
from hammer.server.grammar import SchemaLimits, SchemaRejected, checked_resolved, resolve_refs
from hammer.server.grammar.memo import SchemaMemo
from hammer.server.grammar.shape import check_shape
from hammer.server.grammar.validate import safe_validator
from hammer.server.protocol import FunctionDefinition, NamedToolChoice, Tool, ToolChoice

TOOL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class ToolMode(str, enum.Enum):
    NONE = "none"
    AUTO = "auto"
    REQUIRED = "required"
    NAMED = "named"


@dataclass(frozen=True)
class ToolSchemas:
    """One tool's parameters in the forms the request needs them."""

    #: ``$ref``s inlined: what the model reads in its prompt (one self-contained schema).
    resolved: dict[str, Any]
    #: Checked and bounded for constrained decoding (see ``hammer.server.grammar``).
    decoding: dict[str, Any]


@dataclass(frozen=True)
class ToolPlan:
    """What the request asks of tools, after validation."""

    mode: ToolMode
    functions: tuple[FunctionDefinition, ...]
    forced_name: str | None = None
    parallel: bool = True
    schemas: tuple[ToolSchemas, ...] = ()

    @property
    def by_name(self) -> dict[str, FunctionDefinition]:
        return {f.name: f for f in self.functions}

    def prompt_functions(self) -> list[dict[str, Any]]:
        """The functions as the prompt shows them, with their references resolved."""
        return [{**f.model_dump(exclude_none=True), "parameters": p.resolved}
                for f, p in zip(self.functions, self.schemas)]


def plan_tools(tools: Sequence[Tool] | None, tool_choice: ToolChoice | None, parallel: bool,
               max_tools: int, limits: SchemaLimits) -> ToolPlan:
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
    schemas = []
    for i, function in enumerate(functions):
        schemas.append(_check_function(function, f"tools[{i}].function", limits))
        if function.name in seen:
            raise InvalidRequest(f"Duplicate tool name {function.name!r}.", param=f"tools[{i}].function.name")
        seen.add(function.name)
    if isinstance(tool_choice, NamedToolChoice):
        name = tool_choice.function.name
        if name not in seen:
            raise InvalidRequest(
                f"tool_choice names function {name!r}, which is not among the declared tools "
                f"({', '.join(sorted(seen))}).", param="tool_choice")
        return ToolPlan(ToolMode.NAMED, functions, forced_name=name, parallel=parallel, schemas=tuple(schemas))
    return ToolPlan(ToolMode(tool_choice or "auto"), functions, parallel=parallel, schemas=tuple(schemas))


def _check_function(function: FunctionDefinition, param: str, limits: SchemaLimits) -> ToolSchemas:
    if not TOOL_NAME.match(function.name):
        raise InvalidRequest(
            f"Invalid tool name {function.name!r}: use 1-64 characters from a-z, A-Z, 0-9, '_', '-', '.'.",
            param=f"{param}.name")
    schema = function.parameters
    try:
        # Depth, size and references first: the metaschema check below recurses.
        tool = tool_schemas(schema, limits)
    except SchemaRejected as exc:
        raise InvalidRequest(f"Tool {function.name!r}: {_where(exc)}{exc.message}", param=f"{param}.parameters",
                             code="unsupported_schema") from None
    if schema.get("type", "object") != "object":
        raise InvalidRequest(f"Tool {function.name!r}: 'parameters' must be a JSON Schema of type 'object'.",
                             param=f"{param}.parameters")
    return tool


def _where(exc: SchemaRejected) -> str:
    pointer = exc.pointer if len(exc.pointer) <= 200 else f"{exc.pointer[:100]}…{exc.pointer[-100:]}"
    return f"at {pointer}: " if pointer else ""


# Schemas up to this size are memoized. (issue 22) The memo is bounded by its entries' measured size
# and keeps no rejected schema (hammer.server.grammar.memo).
_MEMO_MAX_CHARS = 64 * 1024
_MEMO: SchemaMemo[ToolSchemas] = SchemaMemo(max_bytes=64 * 1024 * 1024)


def _checked(schema_json: str, limits: SchemaLimits) -> ToolSchemas:
    resolved = resolve_refs(json.loads(schema_json), limits)
    decoding = checked_resolved(resolved, limits)
    problem = _check_schema(schema_json)
    if problem is not None:
        raise SchemaRejected(f"invalid JSON Schema: {problem}", "")
    return ToolSchemas(resolved=resolved, decoding=decoding)


def tool_schemas(schema: Mapping[str, Any], limits: SchemaLimits) -> ToolSchemas:
    """A client schema checked, resolved and bounded; raises ``SchemaRejected``.

    Its shape (depth, size, text) is checked iteratively first: everything after it recurses.
    Memoized for schemas up to 64 KiB: agents send the same tools with every request, and the
    metaschema check alone takes milliseconds.
    """
    check_shape(schema, limits)
    # Key order kept: the prompt shows the schema as sent, and arguments are generated in that order.
    schema_json = json.dumps(schema)
    if len(schema_json) > _MEMO_MAX_CHARS:
        return _checked(schema_json, limits)
    return _MEMO.get((schema_json, limits), lambda: _checked(schema_json, limits))


def _check_schema(schema_json: str) -> str | None:
    try:
        jsonschema.Draft202012Validator.check_schema(json.loads(schema_json))
    except jsonschema.SchemaError as exc:
        return exc.message
    return None


def calls_schema(plan: ToolPlan, max_calls: int, max_string_length: int) -> dict[str, Any]:
    """JSON Schema of the Hammer list of calls the plan allows.

    Each tool's arguments use its checked schema: references resolved against that tool's own
    root (nested under ``items`` they would point elsewhere), bounds capped.

    >>> from hammer.server.protocol import FunctionDefinition as F
    >>> s = calls_schema(plan_tools([Tool(type="function", function=F(name="f"))], "required", False, 8,
    ...                             SchemaLimits()), 8, 64)
    >>> s["minItems"], s["maxItems"], s["items"]["properties"]["name"]
    (1, 1, {'const': 'f'})
    """
    calls = [
        {
            "type": "object",
            "properties": {
                "name": {"const": f.name},
                "arguments": decoding_schema(p.decoding, max_string_length),
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for f, p in zip(plan.functions, plan.schemas)
        if plan.mode != ToolMode.NAMED or f.name == plan.forced_name
    ]
    return {
        "type": "array",
        "items": calls[0] if len(calls) == 1 else {"anyOf": calls},
        "minItems": 0 if plan.mode == ToolMode.AUTO else 1,
        # A named choice asks for that call, once (as OpenAI): clients such as instructor's
        # create_iterable read exactly one call's arguments.
        "maxItems": max_calls if plan.parallel and plan.mode != ToolMode.NAMED else 1,
    }


def remaining_plan(plan: ToolPlan, called: frozenset[str]) -> ToolPlan | None:
    """The plan offered once the model only repeated answered calls: the tools it has not called,
    still at least one call; ``None`` when nothing is left (a named choice offers its one tool only).

    >>> from hammer.server.protocol import FunctionDefinition as F
    >>> tools = [Tool(type="function", function=F(name=n)) for n in ("get_weather", "final_result")]
    >>> plan = plan_tools(tools, "required", True, 8, SchemaLimits())
    >>> [f.name for f in remaining_plan(plan, frozenset({"get_weather"})).functions]
    ['final_result']
    >>> remaining_plan(plan, frozenset({"get_weather", "final_result"})) is None
    True
    """
    if plan.mode != ToolMode.REQUIRED:
        return None
    kept = [(f, p) for f, p in zip(plan.functions, plan.schemas) if f.name not in called]
    if not kept:
        return None
    return dataclasses.replace(plan, functions=tuple(f for f, _ in kept), schemas=tuple(p for _, p in kept))


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
            # A ``false`` property may never be written: leave it out (xgrammar rejects ``false``).
            node[key] = {k: _tighten(v, max_len) for k, v in value.items() if v is not False} \
                if isinstance(value, dict) else value
        elif key not in ("const", "enum", "default", "examples"):
            node[key] = _tighten(value, max_len)
    if node.get("type") == "string" and not {"enum", "const", "pattern", "format"} & node.keys():
        node["maxLength"] = min(node.get("maxLength", max_len), max_len)
    if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
        node["additionalProperties"] = False
    return node


def response_format_schema(kind: str, schema: Mapping[str, Any] | None,
                           limits: SchemaLimits) -> dict[str, Any] | None:
    """The schema to decode ``response_format`` with (checked like a tool's); ``None`` for plain text."""
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        try:
            return tool_schemas(dict(schema or {}), limits).decoding
        except SchemaRejected as exc:
            raise InvalidRequest(f"response_format: {_where(exc)}{exc.message}",
                                 param="response_format.json_schema.schema", code="unsupported_schema") from None
    return None


def argument_errors(function: FunctionDefinition, arguments: Mapping[str, Any]) -> str | None:
    """Why ``arguments`` violate the tool's schema, or ``None`` when they validate."""
    validator = safe_validator(function.parameters)  # (issue 22) patterns never on Python's backtracking re
    error = jsonschema.exceptions.best_match(validator.iter_errors(dict(arguments)))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{where + ': ' if where else ''}{error.message}"
