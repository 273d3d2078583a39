"""One evaluation item, whatever data set it came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Entry:
    """A question, the candidate functions and the accepted answers.

    ``functions`` are in BFCL's format (``{"name", "description", "parameters": {"type": "dict",
    "properties", "required"}}``) and are converted to OpenAI tools the way BFCL does, unless
    ``tools`` holds the OpenAI tools to send as they are (local data sets).
    ``scoring`` is ``"ast"`` (BFCL's AST rules), ``"irrelevance"``, ``"relevance"`` or ``"f1"``.
    ``answers`` are BFCL possible answers (``[{name: {param: [allowed values]}}]``) for ``"ast"``,
    the expected calls (``[{name: {param: value}}]``) for ``"f1"``, and empty when the right
    answer is no call.
    """

    id: str
    category: str
    messages: list[dict[str, Any]]
    functions: list[dict[str, Any]]
    answers: list[dict[str, dict[str, list[Any]]]]
    scoring: str
    tools: list[dict[str, Any]] | None = None
