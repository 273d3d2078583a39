"""Examples → TRL prompt–completion rows, rendered by the server's own format module."""

from __future__ import annotations

from typing import Any

from hammer.training.schema import openai_function
from hammer.training.xlam import Example

from hammer.prompt_format import Call, PromptFormat, render_calls, render_prompt


def to_prompt_completion(example: Example, prompt_format: PromptFormat = "hammer-2.1") -> dict[str, Any]:
    """One training row: ``prompt`` exactly as ``hammer serve`` renders the same tools and query,
    ``completion`` the fenced call list the server parses. Provenance fields ride along.

    >>> row = to_prompt_completion({"id": 3, "query": "Weather in Oslo?", "tools": [
    ...     {"name": "weather", "description": "Current weather", "parameters": {"city": {"type": "str"}}}],
    ...     "answers": [{"name": "weather", "arguments": {"city": "Oslo"}}]})
    >>> row["prompt"].endswith("<|im_start|>user\\nWeather in Oslo?<|im_end|>\\n<|im_start|>assistant\\n")
    True
    >>> row["completion"]
    '```\\n[{"name": "weather", "arguments": {"city": "Oslo"}}]\\n```'
    """
    functions = [openai_function(tool) for tool in example["tools"]]
    calls = [Call(call["name"], call.get("arguments") or {}) for call in example["answers"]]
    return {
        "prompt": render_prompt(functions, [{"role": "user", "content": example["query"]}], prompt_format),
        "completion": render_calls(calls),
        "id": example.get("id"),
        "masked": bool(example.get("masked")),
        "irrelevant": bool(example.get("irrelevant")),
    }
