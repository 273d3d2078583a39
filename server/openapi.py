"""The OpenAPI document as the server behaves: our error shape and codes, no FastAPI 422."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from hammer.server.protocol import ChatCompletionChunk, ErrorResponse

_ERRORS = {
    400: "Invalid request (body, limits, tools, context length)",
    401: "Missing or wrong API key",
    404: "Unknown model",
    429: "Wait queue full; retry after the Retry-After header's seconds",
    503: "The backend failed or is not ready",
    504: "The request ran past --request-timeout",
}


def errors_documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for the OpenAI-shaped errors a route can answer."""
    return {code: {"model": ErrorResponse, "description": _ERRORS[code]} for code in codes}


def chat_sse_schema() -> dict[str, Any]:
    """One event of a ``stream: true`` answer: a chunk, an in-band error, or ``[DONE]``."""
    payload = {"anyOf": [{"$ref": "#/components/schemas/ChatCompletionChunk"},
                         {"$ref": "#/components/schemas/ErrorResponse"}]}
    return {"type": "object", "required": ["data"], "properties": {
        "event": {"const": "message"},
        "data": {"anyOf": [{"const": "[DONE]"}, {"type": "string", "contentMediaType": "application/json",
                                                 "contentSchema": payload}]}}}


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, corrected: no 422 (we answer 400), and the SSE chunks described."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        chunk = ChatCompletionChunk.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(chunk.pop("$defs", {}))
        components["ChatCompletionChunk"] = chunk
        app.openapi_schema = schema
    return app.openapi_schema
