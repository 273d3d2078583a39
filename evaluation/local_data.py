"""Data sets that are not available offline (API-Bank, ToolAlpaca, NexusRaven, Seal-Tools), read
from local files in the xLAM / Hammer evaluation layout and scored by F1.

A file is JSON Lines (``.jsonl``) or a JSON list; each row is::

    {"id": "...",                                   # optional; defaults to the row number
     "query": "user request",                       # or "messages": [{"role", "content"}, ...]
     "tools": [tool, ...],                          # a list or a JSON string of one
     "answers": [{"name": "f", "arguments": {...}}]}  # a list or a JSON string; [] = no call fits

A tool is xLAM-style (``{"name", "description", "parameters": {param: {"type": "str, optional",
"description", "default"?}}}``), an OpenAI function (``parameters`` a JSON Schema with
``"type": "object"``) or an OpenAI tool (``{"type": "function", "function": {...}}``).
``arguments`` may be a JSON string.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hammer.evaluation.entries import Entry
from hammer.evaluation.sample import spread_indices


def openai_tool(tool: dict[str, Any]) -> dict[str, Any]:
    from hammer.training.schema import openai_function

    if tool.get("type") == "function" and "function" in tool:
        return tool
    parameters = tool.get("parameters") or {}
    if parameters.get("type") == "object" or "properties" in parameters:
        return {"type": "function", "function": {"name": tool["name"], "description": tool.get("description", ""),
                                                 "parameters": parameters}}
    return {"type": "function", "function": openai_function(tool)}


def _json_list(value: Any, what: str) -> list[Any]:
    value = json.loads(value) if isinstance(value, str) else value
    if not isinstance(value, list):
        raise TypeError(f"{what} must be a list (or a JSON string of one)")
    return value


def _expected_call(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    arguments = answer.get("arguments", {})
    arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
    return {answer["name"]: arguments}


def load_local(name: str, path: str | Path, limit: int | None = None, *, seed: int = 0,
               first: bool = False) -> list[Entry]:
    """The data set's entries (``limit`` of them spread over the file, as ``bfcl_data.load_category``
    picks them; the first ``limit`` with ``first``); a malformed file or row is a ``ValueError`` naming
    the file, the row (``path:line`` for JSON Lines, ``path:[index]`` for a JSON list) and the field."""
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        if path.suffix == ".jsonl":
            rows: Any = []
            for number, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append((f"{path}:{number}", json.loads(line)))
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{path}:{number}: not JSON ({exc.msg}, column {exc.colno})") from None
        else:
            try:
                data = json.load(f)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: not JSON ({exc.msg}, line {exc.lineno} column {exc.colno}); "
                                 "a data set is a JSON list or JSON Lines (.jsonl)") from None
            if not isinstance(data, list):
                raise TypeError(f"{path}: expected a JSON list or JSON Lines")
            rows = [(f"{path}:[{index}]", row) for index, row in enumerate(data)]
    entries = []
    for index in spread_indices(len(rows), limit, seed, name, first):
        where, row = rows[index]
        if not isinstance(row, dict):
            raise ValueError(f"{where}: a row must be a JSON object, not {type(row).__name__}")
        try:
            messages = row.get("messages") or [{"role": "user", "content": row["query"]}]
            tools = [openai_tool(t) for t in _json_list(row.get("tools", []), f"{where}: tools")]
            answers = [_expected_call(a) for a in _json_list(row.get("answers", []), f"{where}: answers")]
        except KeyError as exc:
            raise ValueError(f"{where}: missing field {exc.args[0]!r} (a row has query or messages, tools and "
                             "answers of {name, arguments})") from None
        except (json.JSONDecodeError, AttributeError) as exc:
            raise ValueError(f"{where}: malformed tools or answers ({exc})") from None
        entries.append(Entry(id=f"{name}_{row.get('id', index)}", category=name, messages=messages, functions=[],
                             answers=answers, scoring="f1", tools=tools))
    return entries
