"""Typed errors and their one mapping to OpenAI's ``{"error": {...}}`` body."""

from __future__ import annotations

from typing import Any

from server.protocol import ErrorBody, ErrorResponse


class APIError(Exception):
    """An error a client sees: HTTP status plus OpenAI's error fields."""

    status_code = 500
    error_type = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.error_type, self.param, self.code)


class InvalidRequest(APIError):
    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    def __init__(self, message: str, *, param: str | None = "messages") -> None:
        super().__init__(message, param=param, code="context_length_exceeded")


class AuthenticationFailed(APIError):
    status_code = 401
    error_type = "authentication_error"


class NotFound(APIError):
    status_code = 404
    error_type = "invalid_request_error"


class Overloaded(APIError):
    status_code = 429
    error_type = "rate_limit_error"


class RequestTimeout(APIError):
    status_code = 504
    error_type = "timeout_error"


class BackendUnavailable(APIError):
    status_code = 503
    error_type = "server_error"


def error_body(message: str, error_type: str, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return ErrorResponse(error=ErrorBody(message=message, type=error_type, param=param, code=code)).model_dump()


def validation_error(errors: list[dict[str, Any]]) -> InvalidRequest:
    """Pydantic/FastAPI validation errors as one 400 naming the first bad field."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return InvalidRequest(f"The request body is not valid JSON: {first.get('msg')}", code="invalid_json")
    # A union of message types reports one error per member; name the field, not the member.
    loc = [p for p in loc if not p.endswith("Message") and not p.startswith(("function-", "literal["))]
    param = ".".join(loc) or None
    messages = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg')}" for e in errors[:5]
    )
    return InvalidRequest(f"Invalid request: {messages}", param=param)
