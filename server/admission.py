"""Admission: at most ``concurrency`` generations run, at most ``max_waiting`` wait, the rest get 429."""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

from hammer.server.errors import Overloaded
from hammer.server.metrics import Metrics


class Ticket:
    """A place in the queue, taken when a request is admitted and given up once it gets a generation
    slot or ends. Streams take theirs before the response starts, so a full queue is an HTTP 429,
    never a 200 whose stream then carries the error."""

    def __init__(self, gate: AdmissionGate) -> None:
        self._gate: AdmissionGate | None = gate

    def release(self) -> None:
        """Leave the queue (idempotent: the stream and the response's cleanup both call it)."""
        if self._gate is not None:
            self._gate._leave()
            self._gate = None


class AdmissionGate:
    def __init__(self, concurrency: int, max_waiting: int, metrics: Metrics) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._capacity = concurrency + max_waiting
        self._waiting = 0  # admitted, no slot yet
        self._running = 0
        self._metrics = metrics

    def admit(self) -> Ticket:
        """A place in the queue, or ``Overloaded`` now if a new request could not even queue.

        Counts admitted requests, not semaphore waiters: a stream is admitted before its body
        runs, so a burst of streams must be bounded before any of them takes a slot."""
        if self._waiting + self._running >= self._capacity:
            raise Overloaded(f"The server is busy: {self._waiting} requests are already waiting. Retry shortly.",
                             code="queue_full", headers={"Retry-After": "1"})
        self._waiting += 1
        self._metrics.queue_depth.inc()
        return Ticket(self)

    def _leave(self) -> None:
        self._waiting -= 1
        self._metrics.queue_depth.dec()

    @contextlib.asynccontextmanager
    async def slot(self, ticket: Ticket | None = None) -> AsyncIterator[None]:
        """Wait for a generation slot (admitting now unless ``ticket`` is given); cancelling the
        waiter (client gone) leaves the queue at once."""
        ticket = ticket or self.admit()
        try:
            await self._slots.acquire()
        finally:
            ticket.release()
        self._running += 1
        self._metrics.running.inc()
        try:
            yield
        finally:
            self._running -= 1
            self._metrics.running.dec()
            self._slots.release()
