"""A verdict per entry: bfcl-eval's AST checker, (ir)relevance detection, and schema validity of each call.

Decoding follows BFCL's OpenAI function-calling handler: each returned tool call becomes
``{name: json.loads(arguments)}``; a reply without tool calls decodes to no call. Names are
mapped back from the sent (underscored) form to BFCL's before checking.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hammer.evaluation import bfcl_checker
from hammer.evaluation.client import Reply
from hammer.evaluation.entries import Entry


@dataclass
class Verdict:
    passed: bool
    error_type: str = ""
    errors: list[Any] = field(default_factory=list)
    calls: list[dict[str, Any]] | None = None  # decoded calls, BFCL names; None if they did not decode
    has_call: bool = False
    calls_total: int = 0
    calls_valid: int = 0  # calls to an offered tool whose arguments validate against its schema
    calls_unchecked: int = 0  # calls whose tool schema jsonschema cannot use (BFCL data quirks)


def decode_calls(reply: Reply, names: dict[str, str]) -> list[dict[str, Any]]:
    """BFCL-style decoding; raises ``ValueError`` when arguments are not JSON."""
    decoded = []
    for call in reply.tool_calls:
        try:
            arguments = json.loads(call["arguments"])
        except json.JSONDecodeError as exc:
            raise ValueError(f"arguments of {call['name']!r} are not JSON: {exc}") from None
        decoded.append({names.get(call["name"], call["name"]): arguments})
    return decoded


def is_call_format(calls: list[dict[str, Any]]) -> bool:
    return all(isinstance(c, dict) and len(c) == 1 and isinstance(next(iter(c.values())), dict) for c in calls)


def is_empty(calls: list[dict[str, Any]]) -> bool:
    """BFCL's ``is_empty_output``: ``[]``, ``[{}]`` or anything not call-shaped is no call."""
    return not is_call_format(calls) or not calls or (len(calls) == 1 and not calls[0])


def schema_validity(reply: Reply, tools: list[dict[str, Any]]) -> tuple[int, int, int]:
    """(total, valid, unchecked) over the returned calls."""
    from jsonschema import exceptions, validators

    schemas = {t["function"]["name"]: t["function"].get("parameters") or {} for t in tools}
    valid = unchecked = 0
    for call in reply.tool_calls:
        if call["name"] not in schemas:
            continue
        try:
            arguments = json.loads(call["arguments"])
        except json.JSONDecodeError:
            continue
        schema = schemas[call["name"]]
        try:
            validator = validators.validator_for(schema)
            validator.check_schema(schema)
            valid += validator(schema).is_valid(arguments)
        except exceptions.SchemaError:
            unchecked += 1
    return len(reply.tool_calls), valid, unchecked


def score(entry: Entry, tools: list[dict[str, Any]], names: dict[str, str], reply: Reply) -> Verdict:
    if reply.error is not None:
        return Verdict(False, "request_error", [reply.error])
    total, valid, unchecked = schema_validity(reply, tools)
    counts = {"calls_total": total, "calls_valid": valid, "calls_unchecked": unchecked}
    try:
        calls = decode_calls(reply, names)
    except ValueError as exc:
        calls, decode_error = None, str(exc)
    has_call = calls is not None and not is_empty(calls)

    if entry.scoring in ("irrelevance", "relevance"):
        passed = has_call == (entry.scoring == "relevance")
        error_type = "" if passed else ("irrelevance_error:decoder_success" if has_call
                                        else "relevance_error:no_call")
        return Verdict(passed, error_type, [], calls, has_call, **counts)

    if entry.scoring == "f1":
        # F1 data sets are scored in aggregate (hammer.evaluation.f1); exact match is the per-entry verdict.
        from hammer.evaluation.f1 import exact_match

        passed = exact_match(calls or [], entry.answers)
        return Verdict(passed, "" if passed else "f1:mismatch", [], calls, has_call, **counts)
    if calls is None:
        return Verdict(False, "ast_decoder:decoder_failed", [decode_error], None, False, **counts)
    if not is_call_format(calls):
        return Verdict(False, "ast_decoder:decoder_wrong_output_format", [str(calls)], calls, has_call, **counts)
    if not calls:
        return Verdict(False, "ast_decoder:no_call", [(reply.content or "")[:300]], calls, False, **counts)
    check = bfcl_checker.check(entry.functions, calls, entry.answers, entry.category)
    if check["valid"]:  # BFCL's verdict carries a placeholder error type even when it passes
        return Verdict(True, "", [], calls, has_call, **counts)
    return Verdict(False, check["error_type"], check["error"], calls, has_call, **counts)
