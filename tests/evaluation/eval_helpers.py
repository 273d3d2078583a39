"""Gold replies built from BFCL possible answers, for tests that score known-good calls."""

from __future__ import annotations

import json
from typing import Any

from hammer.evaluation.bfcl_tools import openai_name
from hammer.evaluation.client import Reply
from hammer.evaluation.entries import Entry


def first_choice(value: Any) -> Any:
    """A concrete value from a BFCL possible answer (first allowed value, optional keys left out)."""
    if isinstance(value, dict):
        return {k: first_choice(v[0] if isinstance(v, list) else v) for k, v in value.items()
                if not (isinstance(v, list) and (not v or v[0] == ""))}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [first_choice(v) for v in value]
    return value


def gold_calls(entry: Entry) -> list[dict[str, dict[str, Any]]]:
    """The answer's calls with BFCL names: ``[{name: {param: value}}]``."""
    return [{name: {p: first_choice(v[0]) for p, v in params.items() if v and v[0] != ""}}
            for answer in entry.answers for name, params in answer.items()]


def gold_reply(entry: Entry) -> Reply:
    """The answer as an OpenAI-style reply would carry it (underscored names, JSON arguments)."""
    return Reply(tool_calls=[{"name": openai_name(name), "arguments": json.dumps(arguments)}
                             for call in gold_calls(entry) for name, arguments in call.items()])
