"""Loading xLAM-function-calling-60k-format data.

An *example* is a plain dict: ``{"query": str, "tools": [tool, ...], "answers": [call, ...]}``
where a tool is ``{"name", "description", "parameters": {param: {"type", "description",
"default"?}}}`` and a call is ``{"name", "arguments": {...}}``. The dataset stores ``tools``
and ``answers`` as JSON strings; ``parse_example`` decodes them once so the transforms work
on Python objects. Extra keys (``id``, ``irrelevant``, ``masked``) ride along.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

Example = dict[str, Any]

HF_DATASET = "Salesforce/xlam-function-calling-60k"


def parse_example(raw: Mapping[str, Any]) -> Example:
    """Decode one dataset row; ``tools``/``answers`` may be JSON strings or already lists.

    >>> parse_example({"id": 7, "query": "q", "tools": '[{"name": "f", "description": "", "parameters": {}}]',
    ...                "answers": '[{"name": "f", "arguments": {}}]'})
    {'id': 7, 'query': 'q', 'tools': [{'name': 'f', 'description': '', 'parameters': {}}], 'answers': [{'name': 'f', 'arguments': {}}]}
    """
    example = dict(raw)
    for key in ("tools", "answers"):
        value = example.get(key, [])
        example[key] = json.loads(value) if isinstance(value, str) else list(value)
    if not isinstance(example.get("query"), str):
        raise TypeError(f"example {example.get('id', '?')} has no string 'query'")
    return example


def load_xlam(source: str | Path) -> list[Example]:
    """Examples from a local ``.json`` (a list) or ``.jsonl`` file, or a Hugging Face dataset name.

    A name that is not an existing file is loaded with ``datasets`` (needs network and, for
    the gated xLAM set, ``huggingface-cli login``).
    """
    path = Path(source)
    if path.is_file():
        return [_with_id(parse_example(row), i) for i, row in enumerate(_read_rows(path))]
    if path.suffix in (".json", ".jsonl") or path.exists():
        raise FileNotFoundError(f"no such data file: {path}")
    try:
        import datasets
    except ImportError:
        raise RuntimeError(f"{source!r} is not a file; loading a hub dataset needs `pip install datasets`") from None
    rows = datasets.load_dataset(str(source), split="train")
    return [_with_id(parse_example(row), i) for i, row in enumerate(rows)]


def _read_rows(path: Path) -> Iterable[Mapping[str, Any]]:
    with path.open(encoding="utf-8") as f:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in f if line.strip()]
        data = json.load(f)
    if not isinstance(data, list):
        raise TypeError(f"{path}: expected a JSON list of examples")
    return data


def _with_id(example: Example, index: int) -> Example:
    example.setdefault("id", index)
    return example
