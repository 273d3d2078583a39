"""BFCL functions → OpenAI ``tools``, as BFCL's handlers for function-calling models build them.

The rules of ``bfcl_eval.model_handler.utils.convert_to_tool`` for OpenAI-style models, with
BFCL's own type table (``GORILLA_TO_OPENAPI``, imported from the installed wheel): each BFCL type
name becomes its JSON Schema type (dict→object, float→number, tuple→array, any→string, an unknown
name→string), a float property also gets ``format: float`` and " This is a float type value." in
its description, a property without a type is a string, and dots in function names become
underscores (OpenAI names match ``^[a-zA-Z0-9_-]{1,64}$``). BFCL's module is not imported itself:
it creates result folders next to the installed wheel and needs tree_sitter, filelock and tenacity.
tests/evaluation/test_eval_bfcl_conformance.py checks that the tools equal ``convert_to_tool``'s
for every entry of every supported category.
"""

from __future__ import annotations

import copy
import functools
import re
from typing import Any


@functools.cache
def _bfcl_types() -> dict[str, str]:
    from bfcl_eval.constants.type_mappings import GORILLA_TO_OPENAPI

    return GORILLA_TO_OPENAPI


def openai_name(name: str) -> str:
    return re.sub(r"\.", "_", name)


def _convert_schema(node: dict[str, Any], is_property: bool) -> dict[str, Any]:
    node = copy.deepcopy(node)
    bfcl_type = node.get("type")
    if bfcl_type is None:
        if is_property:
            node["type"] = "string"
    else:
        node["type"] = _bfcl_types().get(bfcl_type, "string")
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
