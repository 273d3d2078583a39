"""Prepared schemas kept by their JSON text: agents send the same tools with every request, and
preparing one (the metaschema check alone) takes milliseconds.

Bounded by what the entries measure in memory (``deep_size``: the objects themselves, not an
estimate from the text, since a small schema can grow into a large one once checked), least recently used
out. A schema that was rejected is never kept: its exception's traceback would hold whatever the
rejected preparation had built.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections import OrderedDict
from typing import Any, Callable, Generic, Hashable, TypeVar

Value = TypeVar("Value")


class SchemaMemo(Generic[Value]):
    """``get(key, make)``: the kept value of ``key``, or ``make()``'s, kept if it fits.

    >>> memo = SchemaMemo(max_bytes=2000)
    >>> memo.get("a", lambda: ["x" * 500]) is memo.get("a", lambda: None)
    True
    >>> _ = memo.get("b", lambda: ["y" * 1500])   # pushes "a" out
    >>> memo.get("a", lambda: "made again"), len(memo)
    ('made again', 2)
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[Value, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # requests check schemas on several threads

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, key: Hashable, make: Callable[[], Value]) -> Value:
        with self._lock:
            kept = self._entries.get(key)
            if kept is not None:
                self._entries.move_to_end(key)
                return kept[0]
        value = make()  # an exception propagates and nothing is kept
        size = deep_size(key, value)
        with self._lock:
            if size <= self.max_bytes and key not in self._entries:
                self._entries[key] = (value, size)
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, (_, dropped) = self._entries.popitem(last=False)
                    self._bytes -= dropped
        return value


def deep_size(*objects: Any) -> int:
    """Bytes the objects take in memory, with everything they hold (each object once).

    >>> deep_size("x" * 1000) > 1000, deep_size([1, 2]) < deep_size([1, 2, "x" * 100])
    (True, True)
    """
    seen: set[int] = set()
    stack = list(objects)
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            stack.extend(getattr(obj, f.name) for f in dataclasses.fields(obj))
    return total
