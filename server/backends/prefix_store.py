"""The prefix cache on disk (``--cache-dir``): written at shutdown, read at start, so the first request
after a restart (a phone killing and relaunching the server) skips its tool prompt.

Entries live in a folder per model file (name, size, modification time): a state saved from another
model is never offered to this one.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from hammer.server.backends.prefix_cache import Entry


def model_key(model_path: str) -> str:
    """A folder name that changes whenever the model file does.

    >>> len(model_key(__file__))
    16
    """
    stat = os.stat(model_path)
    identity = f"{os.path.abspath(model_path)}:{stat.st_size}:{stat.st_mtime_ns}"
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def save(directory: Path, entries: Iterable[Entry[np.ndarray]]) -> int:
    """Replace the folder's entries with ``entries`` (least recently used first)."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("prefix-*.npz"):
        old.unlink()
    count = 0
    for count, entry in enumerate(entries, start=1):
        partial = directory / f"prefix-{count:04d}.tmp.npz"
        np.savez(partial, tokens=entry.tokens, state=entry.state, superseded=entry.superseded)
        partial.rename(directory / f"prefix-{count:04d}.npz")  # a crash mid-write leaves no half entry
    return count


def load(directory: Path) -> Iterator[Entry[np.ndarray]]:
    """The saved entries, least recently used first, read one at a time (each state is a copy the
    caller moves into memory of its own); unreadable files are skipped."""
    for path in sorted(directory.glob("prefix-*.npz")):
        if path.name.endswith(".tmp.npz"):
            continue
        try:
            with np.load(path) as saved:
                # Files written before the flag was saved hold live entries only.
                superseded = bool(saved["superseded"]) if "superseded" in saved else False
                entry = Entry(saved["tokens"].astype(np.int32, copy=False),
                              saved["state"].astype(np.uint8, copy=False), superseded)
        except (OSError, ValueError, KeyError):
            continue
        yield entry
