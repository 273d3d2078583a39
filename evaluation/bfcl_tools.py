"""BFCL functions → OpenAI ``tools``, as BFCL's handlers for function-calling models build them.

Follows ``bfcl_eval.model_handler.utils.convert_to_tool`` with ``GORILLA_TO_OPENAPI`` for the
OpenAI style: BFCL type names become JSON Schema types (dict→object, float→number with
``format: float`` and a note in the description, tuple→array), a property without a type is a
string, and dots in function names become underscores (OpenAI names match
``^[a-zA-Z0-9_-]{1,64}$``). One deliberate difference: ``any`` gets no ``type`` at all (any JSON
value is accepted) where BFCL says ``string``.
"""

from __future__ import annotations

import copy
import re
from typing import Any

GORILLA_TO_OPENAPI: dict[str, str] = {
    "integer": "integer", "number": "number", "float": "number", "string": "string", "boolean": "boolean",
    "bool": "boolean", "array": "array", "list": "array", "dict": "object", "object": "object", "tuple": "array",
    "byte": "integer", "short": "integer", "long": "integer", "double": "number", "char": "string",
    "String": "string", "Bigint": "integer",
}
ANY_TYPES = ("any", "Any")


def openai_name(name: str) -> str:
    return re.sub(r"\.", "_", name)


def _convert_schema(node: dict[str, Any], is_property: bool) -> dict[str, Any]:
    node = copy.deepcopy(node)
    bfcl_type = node.get("type")
    if bfcl_type in ANY_TYPES:
        del node["type"]
    elif bfcl_type is None:
        if is_property:
            node["type"] = "string"
    else:
        node["type"] = GORILLA_TO_OPENAPI.get(bfcl_type, "string")
        if bfcl_type == "float" and is_property:
            node["format"] = "float"
            node["description"] = node.get("description", "") + " This is a float type value."
    if isinstance(node.get("properties"), dict):
        node["properties"] = {key: _convert_schema(value, True) for key, value in node["properties"].items()}
    if isinstance(node.get("items"), dict):
        node["items"] = _convert_schema(node["items"], False)
    return node


def to_openai_tools(functions: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The tools to send and a map from each sent name back to BFCL's name."""
    tools, names = [], {}
    for function in functions:
        name = openai_name(function["name"])
        names[name] = function["name"]
        parameters = _convert_schema(function.get("parameters") or {"type": "dict", "properties": {}}, False)
        parameters["type"] = "object"
        parameters.setdefault("properties", {})
        tools.append({"type": "function", "function": {
            "name": name, "description": function.get("description", ""), "parameters": parameters}})
    return tools, names
