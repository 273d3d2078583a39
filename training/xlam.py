"""Loading xLAM-function-calling-60k-format data.

An *example* is a plain dict: ``{"query": str, "tools": [tool, ...], "answers": [call, ...]}``
where a tool is ``{"name", "description", "parameters": {param: {"type", "description",
"default"?}}}`` and a call is ``{"name", "arguments": {...}}``. The dataset stores ``tools``
and ``answers`` as JSON strings; ``parse_example`` decodes them once so the transforms work
on Python objects. Extra keys (``id``, ``irrelevant``, ``masked``) ride along.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

Example = dict[str, Any]

HF_DATASET = "Salesforce/xlam-function-calling-60k"


class FieldError(ValueError):
    """A field of one row that is not valid xLAM, e.g. ``'tools' is missing``."""


class RowError(ValueError):
    """A source row that is not a valid xLAM example; ``str()`` names the row and the field,
    e.g. ``row 3 (line 4): 'tools' is missing`` (rows count from 0, as ``id`` does; lines from 1)."""

    def __init__(self, row: int, problem: str, line: int | None = None) -> None:
        self.row, self.problem, self.line = row, problem, line
        where = f"row {row}" + (f" (line {line})" if line is not None else "")
        super().__init__(f"{where}: {problem}")


def parse_example(raw: Mapping[str, Any]) -> Example:
    """Decode and check one dataset row; ``tools``/``answers`` may be JSON strings or already lists.

    Raises ``FieldError`` (a ``ValueError``) naming the field (``'tools' is missing``, ``'answers': Expecting ','
    delimiter: ...``, ``'answers'[0] calls 'f', which is not in 'tools'``, ...).

    >>> parse_example({"id": 7, "query": "q", "tools": '[{"name": "f", "description": "", "parameters": {}}]',
    ...                "answers": '[{"name": "f", "arguments": {}}]'})
    {'id': 7, 'query': 'q', 'tools': [{'name': 'f', 'description': '', 'parameters': {}}], 'answers': [{'name': 'f', 'arguments': {}}]}
    """
    if not isinstance(raw, Mapping):
        raise FieldError(f"expected an object with 'query', 'tools' and 'answers', got {_kind(raw)}")
    example = dict(raw)
    if "query" not in example:
        raise FieldError("'query' is missing")
    if not isinstance(example["query"], str):
        raise FieldError(f"'query' must be a string, got {_kind(example['query'])}")
    if not example["query"].strip():
        raise FieldError("'query' is empty")
    for key in ("tools", "answers"):
        example[key] = _json_list(example, key)
    tools: dict[str, Mapping[str, Any]] = {}
    for i, tool in enumerate(example["tools"]):
        _check_tool(tool, f"'tools'[{i}]")
        tools.setdefault(tool["name"], tool)
    for i, call in enumerate(example["answers"]):
        _check_call(call, f"'answers'[{i}]", tools)
    return example


def _json_list(example: Mapping[str, Any], key: str) -> list[Any]:
    if key not in example or example[key] is None:
        raise FieldError(f"'{key}' is missing")
    value = example[key]
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise FieldError(f"'{key}': {exc}") from None
    if not isinstance(value, (list, tuple)):
        raise FieldError(f"'{key}' must be a JSON list, got {_kind(value)}")
    return list(value)


def _check_tool(tool: Any, where: str) -> None:
    if not isinstance(tool, Mapping):
        raise FieldError(f"{where} must be an object with 'name', 'description' and 'parameters', got {_kind(tool)}")
    if not isinstance(tool.get("name"), str) or not tool["name"]:
        raise FieldError(f"{where}: 'name' is missing" if "name" not in tool
                         else f"{where}: 'name' must be a non-empty string, got {tool['name']!r}")
    where = f"{where} ({tool['name']})"
    if "description" not in tool:
        raise FieldError(f"{where}: 'description' is missing")
    if not isinstance(tool["description"], str):
        raise FieldError(f"{where}: 'description' must be a string, got {_kind(tool['description'])}")
    parameters = tool.get("parameters")
    if "parameters" not in tool:
        raise FieldError(f"{where}: 'parameters' is missing")
    if parameters is not None and not isinstance(parameters, Mapping):
        raise FieldError(f"{where}: 'parameters' must be an object, got {_kind(parameters)}")
    for name, spec in (parameters or {}).items():
        if not isinstance(spec, Mapping):
            raise FieldError(f"{where}: parameter '{name}' must be an object with 'type' and 'description', "
                             f"got {_kind(spec)}")


def _check_call(call: Any, where: str, tools: Mapping[str, Mapping[str, Any]]) -> None:
    if not isinstance(call, Mapping):
        raise FieldError(f"{where} must be an object with 'name' and 'arguments', got {_kind(call)}")
    if not isinstance(call.get("name"), str):
        raise FieldError(f"{where}: 'name' is missing" if "name" not in call
                         else f"{where}: 'name' must be a string, got {_kind(call['name'])}")
    if call["name"] not in tools:
        listed = ", ".join(tools) or "none"
        raise FieldError(f"{where} calls '{call['name']}', which is not in 'tools' ({listed})")
    if "arguments" not in call:
        raise FieldError(f"{where} ({call['name']}): 'arguments' is missing")
    if not isinstance(call["arguments"], Mapping):
        raise FieldError(f"{where} ({call['name']}): 'arguments' must be an object, got {_kind(call['arguments'])}")
    parameters = tools[call["name"]].get("parameters") or {}
    unknown = [name for name in call["arguments"] if name not in parameters]
    if unknown:
        raise FieldError(f"{where} ({call['name']}): argument '{unknown[0]}' is not a parameter of "
                         f"'{call['name']}' ({', '.join(parameters) or 'it has none'})")


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def load_xlam(source: str | Path) -> list[Example]:
    """Examples from a local ``.json`` (a list) or ``.jsonl`` file, or a Hugging Face dataset name.

    A name that is not an existing file is loaded with ``datasets`` (needs network and, for
    the gated xLAM set, ``huggingface-cli login``). The first bad row raises ``RowError``.
    """
    examples, errors = read_xlam(source)
    if errors:
        more = f" ({len(errors) - 1} more bad row{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise RowError(errors[0].row, errors[0].problem + more, errors[0].line)
    return examples


def read_xlam(source: str | Path) -> tuple[list[Example], list[RowError]]:
    """The valid examples of ``source`` and a ``RowError`` for each bad row, in file order.

    Rows keep their position as ``id`` (unless they carry one), so skipping bad rows does not
    renumber the good ones.
    """
    path = Path(source)
    if path.is_file():
        rows = _read_rows(path)
    elif path.suffix in (".json", ".jsonl") or path.exists():
        raise FileNotFoundError(f"no such data file: {path}")
    else:
        try:
            import datasets
        except ImportError:
            raise RuntimeError(f"{source!r} is not a file; loading a hub dataset needs `pip install datasets`") from None
        rows = [(row, None) for row in datasets.load_dataset(str(source), split="train")]
    examples: list[Example] = []
    errors: list[RowError] = []
    for i, (row, line) in enumerate(rows):
        try:
            if isinstance(row, RowError):
                raise row
            examples.append(_with_id(parse_example(row), i))
        except RowError as exc:
            errors.append(RowError(i, exc.problem, line))
        except ValueError as exc:
            errors.append(RowError(i, str(exc), line))
    return examples, errors


def _read_rows(path: Path) -> list[tuple[Any, int | None]]:
    """(row, line number) pairs: line numbers for JSON Lines, ``None`` for a JSON list. A JSON
    Lines row that does not parse comes back as a ``RowError`` in place of the row."""
    with path.open(encoding="utf-8") as f:
        if path.suffix == ".jsonl":
            rows: list[tuple[Any, int | None]] = []
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rows.append((json.loads(line), number))
                except json.JSONDecodeError as exc:
                    rows.append((RowError(-1, f"not valid JSON: {exc}"), number))
            return rows
        try:
            data = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc}); a .json file must hold one list of examples, "
                             "a .jsonl file one example per line") from None
    if not isinstance(data, list):
        raise TypeError(f"{path}: expected a JSON list of examples, got {_kind(data)}")
    return [(row, None) for row in data]


def _with_id(example: Example, index: int) -> Example:
    example.setdefault("id", index)
    return example
