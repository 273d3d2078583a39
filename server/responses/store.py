"""Finished responses kept in memory, per API key, so ``previous_response_id``, GET and DELETE work.

Bounded three ways, oldest first out (least recently used): a number of responses, an age, and the
characters they hold together (each keeps its whole conversation, so a long chain of continuations
grows). Lost on restart; not shared between replicas.
"""

from __future__ import annotations

import hashlib
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
                 max_chars: int = MAX_CHARS, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_responses = max_responses
        self.max_age_s = max_age_s
        self.max_chars = max_chars
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], Stored] = OrderedDict()
        self._chars = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> ResponseStore:
        return cls(settings.responses_store_size, settings.responses_store_ttl, settings.responses_store_chars)

    @staticmethod
    def namespace(authorization: str | None, keyed: bool) -> str:
        """The store's namespace for a request: its API key (hashed: the store never holds keys), or
        one shared namespace when the server has no keys.

        >>> ResponseStore.namespace("Bearer k1", True) == ResponseStore.namespace("Bearer k2", True)
        False
        >>> ResponseStore.namespace("Bearer k1", False)
        ''
        """
        if not keyed:
            return ""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, namespace: str, response: ResponseObject, messages: list[dict[str, Any]]) -> bool:
        """Keep ``response``; False if it alone is larger than the store."""
        size = len(response.model_dump_json()) + len(json.dumps(messages, ensure_ascii=False))
        if size > self.max_chars or self.max_responses < 1:
            return False
        key = (namespace, response.id)
        self._remove(key)
        self._entries[key] = Stored(response, messages, self._clock(), size)
        self._chars += size
        self._expire()
        while len(self._entries) > self.max_responses or self._chars > self.max_chars:
            self._remove(next(iter(self._entries)))
        return True

    def get(self, namespace: str, response_id: str) -> Stored | None:
        self._expire()
        key = (namespace, response_id)
        stored = self._entries.get(key)
        if stored is not None:
            self._entries.move_to_end(key)
        return stored

    def delete(self, namespace: str, response_id: str) -> bool:
        self._expire()
        return self._remove((namespace, response_id))

    def _remove(self, key: tuple[str, str]) -> bool:
        stored = self._entries.pop(key, None)
        if stored is None:
            return False
        self._chars -= stored.size
        return True

    def _expire(self) -> None:
        """Drop responses past their age (by insertion time; LRU order only moves on reads, so scan)."""
        cutoff = self._clock() - self.max_age_s
        for key in [k for k, s in self._entries.items() if s.at < cutoff]:
            self._remove(key)
