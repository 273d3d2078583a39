"""Stop sequences over streamed text, holding back only what could still become one.

An Aho–Corasick automaton over the stop strings: each generated character moves it one state
(amortised), so the cost per token does not grow with the stops' length (rebuilding every prefix
of every stop per token made a 400,000-character stop cost seconds a token). The state is the
longest tail of the text that begins some stop, which is exactly the text held back.
"""

from __future__ import annotations


class StopMatcher:
    """Feed text pieces; get what is safe to emit and whether a stop sequence ended the text.

    >>> m = StopMatcher(("END",))
    >>> m.feed("abcE"), m.feed("NDxyz"), m.stopped, m.matched
    ('abc', '', True, 'END')
    >>> m = StopMatcher(("abcd", "bc"))      # a stop inside another's prefix ends the text first
    >>> m.feed("xab"), m.feed("c"), m.stopped
    ('x', 'a', True)
    >>> m = StopMatcher(("aab",))            # held back text shrinks along the failure links
    >>> m.feed("aaa"), m.feed("c"), m.flush()
    ('a', 'aac', '')
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        # Per state: transitions, failure link, depth, a stop it is a prefix of, length of a stop ending here.
        self._goto: list[dict[str, int]] = [{}]
        self._fail = [0]
        self._depth = [0]
        self._owner = [0]
        self._hit = [0]
        self._build()
        self._state = 0
        self.stopped = False
        #: The stop sequence that ended the text (Anthropic's ``stop_sequence``), once ``stopped``.
        self.matched: str | None = None

    def _build(self) -> None:
        for index, stop in enumerate(self._stops):
            state = 0
            for char in stop:
                nxt = self._goto[state].get(char)
                if nxt is None:
                    nxt = len(self._goto)
                    self._goto[state][char] = nxt
                    self._goto.append({})
                    self._fail.append(0)
                    self._depth.append(self._depth[state] + 1)
                    self._owner.append(index)
                    self._hit.append(0)
                state = nxt
            self._hit[state] = len(stop)
        queue = list(self._goto[0].values())  # breadth first: a failure link points to a shallower state
        for state in queue:
            for char, nxt in self._goto[state].items():
                self._fail[nxt] = self._step(self._fail[state], char) if state else 0
                # The longest stop ending here: this state's own, else the one along its failure link.
                self._hit[nxt] = self._hit[nxt] or self._hit[self._fail[nxt]]
                queue.append(nxt)

    def _step(self, state: int, char: str) -> int:
        while state and char not in self._goto[state]:
            state = self._fail[state]
        return self._goto[state].get(char, 0)

    def _held(self, count: int) -> str:
        """The first ``count`` characters of the held-back text (a prefix of the state's stop)."""
        return self._stops[self._owner[self._state]][:count] if count else ""

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        if not self._stops:
            return text
        held = self._depth[self._state]
        state = self._state
        for i, char in enumerate(text):
            state = self._step(state, char)
            if self._hit[state]:
                self.stopped = True
                # The stop ending here is the tail of the held-back text and what came since.
                self.matched = (self._held(held) + text[: i + 1])[-self._hit[state]:]
                return self._release(held, text, held + i + 1 - self._hit[state], 0)
        return self._release(held, text, held + len(text) - self._depth[state], state)

    def _release(self, held: int, text: str, count: int, state: int) -> str:
        """The first ``count`` characters of the held-back text followed by ``text``; then move to ``state``."""
        released = self._held(min(count, held)) + text[: max(count - held, 0)]
        self._state = state
        return released

    def flush(self) -> str:
        pending = "" if self.stopped else self._held(self._depth[self._state])
        self._state = 0
        return pending
