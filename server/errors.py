"""Typed errors and their one mapping to OpenAI's ``{"error": {...}}`` body."""

from __future__ import annotations

from typing import Any, Sequence

from hammer.server.protocol import ErrorBody, ErrorResponse


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


class RouteNotFound(NotFound):
    error_type = "not_found_error"


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


def validation_error(errors: list[dict[str, Any]], content_type: str | None = "application/json") -> InvalidRequest:
    """Pydantic/FastAPI validation errors as one 400 naming the first bad field.

    >>> validation_error([{"loc": ("body", "messages", 0, "system", "content", "str"), "msg": "bad"}]).param
    'messages[0].content'

    A body that was not read as JSON (curl's ``-d`` sends a form) says how to send it:

    >>> error = validation_error([{"loc": ("body",), "type": "model_attributes_type"}],
    ...                          "application/x-www-form-urlencoded")
    >>> error.code, error.message.split(" (")[0]
    ('invalid_content_type', "The request body must be JSON sent with 'Content-Type: application/json'")
    """
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    media_type = (content_type or "").split(";")[0].strip().lower()
    if tuple(first.get("loc", ())) == ("body",) and not _is_json(media_type):
        return InvalidRequest(f"The request body must be JSON sent with 'Content-Type: application/json' (this "
                              f"request sent {media_type or 'no Content-Type'!r}); with curl: "
                              f"-H 'Content-Type: application/json'", code="invalid_content_type")
    if first.get("type") == "json_invalid":
        return InvalidRequest(f"The request body is not valid JSON: {first.get('msg')}", code="invalid_json")
    unknown = [param_path(e["loc"]) for e in errors if e.get("type") == "extra_forbidden" and len(e["loc"]) == 2]
    if unknown:  # OpenAI's own wording, for top-level parameters this server does not know
        return InvalidRequest(f"Unrecognized request argument{'s' if len(unknown) > 1 else ''} supplied: "
                              f"{', '.join(map(str, unknown))}", param=unknown[0])
    messages = "; ".join(f"{param_path(e.get('loc', ())) or 'body'}: {in_our_words(e)}" for e in errors[:5])
    return InvalidRequest(f"Invalid request: {messages}", param=param_path(first.get("loc", ())))


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


def route_not_found(method: str, path: str, routes: Sequence[str]) -> RouteNotFound:
    """A 404 for an unknown route that names the route probably meant: an SDK's ``base_url`` without
    ``/v1`` sends ``/chat/completions``.

    >>> route_not_found("POST", "/chat/completions", ["/v1/chat/completions", "/health"]).message
    "No route POST /chat/completions; did you mean /v1/chat/completions? (an OpenAI client's base_url ends in /v1)"
    >>> route_not_found("GET", "/v2/models", ["/v1/models"]).message
    'No route GET /v2/models.'
    """
    if not path.startswith("/v1/") and f"/v1{path}" in routes:
        return RouteNotFound(f"No route {method} {path}; did you mean /v1{path}? (an OpenAI client's base_url "
                             "ends in /v1)", code="unknown_route")
    return RouteNotFound(f"No route {method} {path}.", code="unknown_route")


_JSON_TYPES = {"string_type": "a string", "int_type": "an integer", "float_type": "a number",
               "bool_type": "a boolean", "dict_type": "an object", "list_type": "an array",
               "model_type": "an object", "model_attributes_type": "an object", "none_required": "null",
               "int_from_float": "an integer", "string_unicode": "a string", "int_parsing": "an integer",
               "float_parsing": "a number", "bool_parsing": "true or false"}


def in_our_words(error: dict[str, Any]) -> str:
    """One pydantic error in our own words, from its ``type`` and ``ctx`` (not pydantic's text,
    which changes between releases); our validators' own sentences without pydantic's prefix.

    >>> in_our_words({"type": "too_long", "ctx": {"field_type": "List", "max_length": 4}, "msg": "..."})
    'at most 4 items'
    >>> in_our_words({"type": "less_than_equal", "ctx": {"le": 2.0}, "msg": "..."})
    'must be at most 2.0'
    >>> in_our_words({"type": "value_error", "msg": "Value error, metadata has 17 keys; at most 16"})
    'metadata has 17 keys; at most 16'
    """
    kind, ctx = error.get("type", ""), error.get("ctx") or {}
    if kind in _JSON_TYPES:
        return f"must be {_JSON_TYPES[kind]}"
    words = {
        "missing": lambda: "is required",
        "extra_forbidden": lambda: "is not a known field",
        "too_long": lambda: f"at most {ctx['max_length']} items",
        "too_short": lambda: f"at least {ctx['min_length']} item{'s' if ctx['min_length'] != 1 else ''}",
        "string_too_long": lambda: f"at most {ctx['max_length']} characters",
        "string_too_short": lambda: f"at least {ctx['min_length']} characters",
        "greater_than": lambda: f"must be greater than {ctx['gt']}",
        "greater_than_equal": lambda: f"must be at least {ctx['ge']}",
        "less_than": lambda: f"must be less than {ctx['lt']}",
        "less_than_equal": lambda: f"must be at most {ctx['le']}",
        "literal_error": lambda: f"must be one of {ctx['expected']}",
        "union_tag_invalid": lambda: f"{ctx['discriminator']} must be one of {ctx['expected_tags']}",
        "union_tag_not_found": lambda: f"{ctx['discriminator']} is required",
    }.get(kind)
    try:
        return words() if words else str(error.get("msg", "")).removeprefix("Value error, ")
    except KeyError:  # a release that renamed a context key: pydantic's own text rather than none
        return str(error.get("msg", ""))


_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_TYPE_LABELS = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def param_path(loc: Sequence[str | int]) -> str | None:
    """A pydantic error location as OpenAI writes ``param`` (``messages[0].content``).

    Union members label the location too (``str``, ``list[TextPart]``, ``NamedToolChoice``, and a
    message's role tag); they name no field, so they are left out.
    """
    parts: list[str] = []
    for i, part in enumerate(loc):
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif i == 0 and part == "body":
            continue
        elif not part.isidentifier() or part[0].isupper() or part in _TYPE_LABELS:
            continue
        elif part in _ROLES and i and isinstance(loc[i - 1], int):
            continue
        else:
            parts.append(f".{part}" if parts else part)
    return "".join(parts) or None
