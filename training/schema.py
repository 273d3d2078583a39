"""xLAM tools as OpenAI ``function`` objects with a JSON Schema, as clients send them to the server.

Training prompts are rendered from these, so a model is trained on the tool layout that
``hammer serve`` renders for a real OpenAI request; the same schema validates answers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_SCALARS = {
    "str": "string", "string": "string", "int": "integer", "integer": "integer", "float": "number",
    "number": "number", "double": "number", "bool": "boolean", "boolean": "boolean",
}
_ARRAYS = {"list", "array", "tuple", "set", "sequence"}
_OBJECTS = {"dict", "object", "mapping"}
_OPTIONAL = re.compile(r"^optional\[(.*)\]$", re.IGNORECASE)


def xlam_type_schema(type_name: str) -> tuple[dict[str, Any], bool]:
    """JSON Schema for an xLAM type string, and whether the type says it is optional.

    >>> xlam_type_schema("List[int], optional")
    ({'type': 'array', 'items': {'type': 'integer'}}, True)
    >>> xlam_type_schema("Dict[str, Any]")
    ({'type': 'object'}, False)
    >>> xlam_type_schema("Callable")
    ({}, False)
    """
    text = type_name.strip()
    optional = False
    if text.lower().endswith(", optional"):
        text, optional = text[: -len(", optional")].strip(), True
    if match := _OPTIONAL.match(text):
        text, optional = match.group(1).strip(), True
    head, _, inner = text.partition("[")
    head = head.strip().lower()
    if head in _SCALARS:
        return {"type": _SCALARS[head]}, optional
    if head in _ARRAYS:
        item = inner.rstrip("]").strip()
        items = xlam_type_schema(item)[0] if item and "," not in item else {}
        return ({"type": "array", "items": items} if items else {"type": "array"}), optional
    if head in _OBJECTS:
        return {"type": "object"}, optional
    return {}, optional  # Any, Callable, unions, ...: no constraint rather than a wrong one


def openai_function(tool: Mapping[str, Any]) -> dict[str, Any]:
    """An xLAM tool as an OpenAI ``function``: typed properties, ``required`` for parameters that
    are neither optional nor defaulted, and no unknown arguments.

    >>> openai_function({"name": "f", "description": "d", "parameters": {
    ...     "q": {"type": "str", "description": "query"},
    ...     "n": {"type": "int, optional", "description": "count", "default": 5}}})
    {'name': 'f', 'description': 'd', 'parameters': {'type': 'object', 'properties': {'q': {'type': 'string', 'description': 'query'}, 'n': {'type': 'integer', 'description': 'count', 'default': 5}}, 'required': ['q'], 'additionalProperties': False}}
    """
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, spec in (tool.get("parameters") or {}).items():
        spec = spec if isinstance(spec, Mapping) else {}
        schema, optional = xlam_type_schema(str(spec.get("type", "")))
        properties[name] = _property(spec, schema)
        # ``required: true`` marks a required parameter that still documents a default (BFCL has some).
        if spec.get("required") is True or ("default" not in spec and not optional):
            required.append(name)
    return {
        "name": tool["name"],
        "description": tool.get("description", ""),
        "parameters": {"type": "object", "properties": properties, "required": required,
                       "additionalProperties": False},
    }


def _property(spec: Mapping[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """One property: the type as JSON Schema, the description as a string, and every other key kept
    in its place (none added), so JSON Schema keywords (``enum``, ``items``, ``properties``, ``format``) that
    tools converted from BFCL carry render as the client sent them.

    >>> _property({"type": "str, optional", "enum": ["C", "F"], "description": "unit"}, {"type": "string"})
    {'type': 'string', 'enum': ['C', 'F'], 'description': 'unit'}
    """
    prop: dict[str, Any] = {}
    for key, value in spec.items():
        if key == "type":
            prop.update(schema)
        elif key == "description":
            prop["description"] = str(value)
        elif key == "required" and isinstance(value, bool):
            continue  # the function's ``required`` list says it
        else:
            prop[key] = value
    if "type" not in spec:
        prop = {**schema, **prop}
    return prop
