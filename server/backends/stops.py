"""Stop sequences over streamed text, holding back only what could still become one."""

from __future__ import annotations


class StopMatcher:
    """Feed text pieces; get what is safe to emit and whether a stop sequence ended the text.

    >>> m = StopMatcher(("END",))
    >>> m.feed("abcE"), m.feed("NDxyz"), m.stopped
    ('abc', '', True)
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        if not self._stops:
            return text
        buffer = self._pending + text
        hits = [i for i in (buffer.find(s) for s in self._stops) if i >= 0]
        if hits:
            self.stopped = True
            self._pending = ""
            return buffer[: min(hits)]
        keep = max((k for s in self._stops for k in range(1, len(s)) if buffer.endswith(s[:k])), default=0)
        self._pending = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        pending, self._pending = self._pending, ""
        return "" if self.stopped else pending
