"""A progress bar: tqdm when installed, else a line on stderr every few entries."""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    def __init__(self, total: int, description: str) -> None:
        self.total, self.description, self.done = total, description, 0
        self.started = time.monotonic()
        try:
            from tqdm import tqdm
        except ImportError:
            self._bar: Any = None
        else:
            self._bar = tqdm(total=total, desc=description, unit="req", file=sys.stderr, dynamic_ncols=True)

    def update(self, passed: int, errors: int) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.set_postfix(passed=passed, errors=errors, refresh=False)
            self._bar.update(1)
        elif self.done == self.total or self.done % 10 == 0:
            elapsed = time.monotonic() - self.started
            print(f"{self.description}: {self.done}/{self.total} passed={passed} errors={errors} "
                  f"({elapsed:.0f}s)", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
