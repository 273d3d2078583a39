"""Assertions the transform tests share."""

from __future__ import annotations

import jsonschema
from hammer.training.schema import openai_function
from hammer.training.xlam import Example


def assert_answers_valid(example: Example) -> None:
    """Every call names a candidate tool and its arguments validate against that tool's schema."""
    tools = {tool["name"]: openai_function(tool) for tool in example["tools"]}
    for call in example["answers"]:
        assert call["name"] in tools, f"{call['name']} is not among {sorted(tools)}"
        jsonschema.validate(call["arguments"], tools[call["name"]]["parameters"])
