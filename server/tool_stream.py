"""Split streamed Hammer output into the complete call objects of its top-level JSON list."""

from __future__ import annotations


class CallScanner:
    """Feed text as it is generated; each complete ``{...}`` element of the list comes out once.

    >>> s = CallScanner()
    >>> s.feed('```\\n[{"name": "f", "arg'), s.feed('uments": {"q": "}"}}, {"na')
    ([], ['{"name": "f", "arguments": {"q": "}"}}'])
    >>> s.partial, s.closed
    ('{"na', False)
    """

    def __init__(self) -> None:
        self._text = ""
        self._pos = 0
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._start: int | None = None
        self.opened = False
        self.closed = False

    def feed(self, text: str) -> list[str]:
        self._text += text
        complete: list[str] = []
        while self._pos < len(self._text) and not self.closed:
            char = self._text[self._pos]
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
            elif char == '"' and self.opened:
                self._in_string = True
            elif char == "[" or (char == "{" and self.opened):
                if self._depth == 0 and char == "[":
                    self.opened = True
                elif self._depth == 1 and char == "{":
                    self._start = self._pos
                self._depth += 1
            elif char in "]}" and self.opened:
                self._depth -= 1
                if self._depth == 1 and char == "}" and self._start is not None:
                    complete.append(self._text[self._start : self._pos + 1])
                    self._start = None
                elif self._depth == 0:
                    self.closed = True
            self._pos += 1
        return complete

    @property
    def text(self) -> str:
        return self._text

    @property
    def partial(self) -> str:
        """The element being written when the text ended (empty when none was open)."""
        return self._text[self._start :] if self._start is not None else ""
