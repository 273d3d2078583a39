"""Finished responses kept in memory, per API key, so ``previous_response_id``, GET and DELETE work.

Bounded three ways, oldest first out (least recently used): a number of responses, an age, and the
characters they hold together (each keeps its whole conversation, so a long chain of continuations
grows). Each API key has an equal share of the number and the characters, and evicts only its own
responses: one key cannot push another's out. Lost on restart; not shared between replicas.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from hammer.server.responses.protocol import ResponseObject
from hammer.server.settings import Settings

# Defaults of --responses-store-size, --responses-store-ttl and --responses-store-chars.
MAX_RESPONSES = 1000
MAX_AGE_S = 3600.0
MAX_CHARS = 64 * 1024 * 1024


@dataclass(frozen=True)
class Stored:
    response: ResponseObject
    #: The conversation up to and including this response's output, as chat messages (no instructions).
    messages: list[dict[str, Any]]
    at: float
    size: int


class ResponseStore:
    def __init__(self, max_responses: int = MAX_RESPONSES, max_age_s: float = MAX_AGE_S,
                 max_chars: int = MAX_CHARS, clock: Callable[[], float] = time.monotonic, shares: int = 1) -> None:
        #: Each namespace's share: ``shares`` is the number of API keys (1 when the server has none);
        #: a store that keeps anything keeps at least one response per key.
        self.max_responses = max_responses and max(1, max_responses // max(shares, 1))
        self.max_age_s = max_age_s
        self.max_chars = max_chars // max(shares, 1)
        self._clock = clock
        # Namespaces are the ids of configured keys (or the one shared ""), so this dict stays small.
        self._spaces: dict[str, _Space] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> ResponseStore:
        return cls(settings.responses_store_size, settings.responses_store_ttl, settings.responses_store_chars,
                   shares=len(settings.api_keys()))

    def __len__(self) -> int:
        return sum(len(space.entries) for space in self._spaces.values())

    def put(self, namespace: str, response: ResponseObject, messages: list[dict[str, Any]]) -> bool:
        """Keep ``response`` (without what no replay needs); False if it alone is larger than a share."""
        response = replayable(response)
        size = len(response.model_dump_json()) + len(json.dumps(messages, ensure_ascii=False))
        if size > self.max_chars or self.max_responses < 1:
            return False
        space = self._spaces.setdefault(namespace, _Space())
        space.remove(response.id)
        space.add(response.id, Stored(response, messages, self._clock(), size))
        space.expire(self._clock() - self.max_age_s)
        while len(space.entries) > self.max_responses or space.chars > self.max_chars:
            space.remove(next(iter(space.entries)))
        return True

    def get(self, namespace: str, response_id: str) -> Stored | None:
        space = self._spaces.get(namespace)
        if space is None:
            return None
        space.expire(self._clock() - self.max_age_s)
        stored = space.entries.get(response_id)
        if stored is not None:
            space.entries.move_to_end(response_id)
        return stored

    def delete(self, namespace: str, response_id: str) -> bool:
        space = self._spaces.get(namespace)
        if space is None:
            return False
        space.expire(self._clock() - self.max_age_s)
        return space.remove(response_id)


def replayable(response: ResponseObject) -> ResponseObject:
    """``response`` without the annotations a stored response never needs: ``previous_response_id``
    replays only the conversation (tools and ``text.format`` are not carried over), so tools keep
    their names and ``text.format`` its type and name, not descriptions and schemas that can be
    megabytes.

    >>> r = ResponseObject(id="r", status="completed", model="m", parallel_tool_calls=True, temperature=1, top_p=1,
    ...     text={"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}}}, tool_choice="auto",
    ...     tools=[{"type": "function", "name": "f", "description": "long", "parameters": {"type": "object"}}])
    >>> stored = replayable(r)
    >>> stored.tools, stored.text
    ([{'type': 'function', 'name': 'f'}], {'format': {'type': 'json_schema', 'name': 'n'}})
    """
    fmt = response.text.get("format") or {}
    return response.model_copy(update={
        "tools": [{k: t[k] for k in ("type", "name") if k in t} for t in response.tools],
        "text": {**response.text, "format": {k: fmt[k] for k in ("type", "name", "strict") if k in fmt}}})


class _Space:
    """One namespace's responses, least recently used first, and the characters they hold."""

    def __init__(self) -> None:
        self.entries: OrderedDict[str, Stored] = OrderedDict()
        self.chars = 0

    def add(self, response_id: str, stored: Stored) -> None:
        self.entries[response_id] = stored
        self.chars += stored.size

    def remove(self, response_id: str) -> bool:
        stored = self.entries.pop(response_id, None)
        if stored is None:
            return False
        self.chars -= stored.size
        return True

    def expire(self, cutoff: float) -> None:
        """Drop responses stored before ``cutoff`` (by insertion time; LRU order only moves on reads, so scan)."""
        for response_id in [r for r, s in self.entries.items() if s.at < cutoff]:
            self.remove(response_id)
