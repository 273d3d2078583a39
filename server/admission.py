"""Admission: at most ``concurrency`` generations run, at most ``max_waiting`` wait, the rest get 429."""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

from server.errors import Overloaded
from server.metrics import Metrics


class AdmissionGate:
    def __init__(self, concurrency: int, max_waiting: int, metrics: Metrics) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._max_waiting = max_waiting
        self._waiting = 0
        self._metrics = metrics

    def check(self) -> None:
        """Raise ``Overloaded`` now if a new request could not even queue."""
        if self._slots.locked() and self._waiting >= self._max_waiting:
            raise Overloaded(f"The server is busy: {self._waiting} requests are already waiting. Retry shortly.",
                             code="queue_full", headers={"Retry-After": "1"})

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a generation slot; cancelling the waiter (client gone) leaves the queue at once."""
        self.check()
        self._waiting += 1
        self._metrics.queue_depth.inc()
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
            self._metrics.queue_depth.dec()
        self._metrics.running.inc()
        try:
            yield
        finally:
            self._metrics.running.dec()
            self._slots.release()
