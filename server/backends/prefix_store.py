"""The prefix cache on disk (``--cache-dir``): written at shutdown, read at start, so the first request
after a restart (a phone killing and relaunching the server) skips its tool prompt.

Entries live in a folder per model file (name, size, modification time): a state saved from another
model is never offered to this one.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import zipfile
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

import numpy as np
from hammer.server.backends.prefix_cache import Entry

#: How much of a state is read at a time: the only buffer a load needs besides the states' own memory.
_CHUNK = 1 << 20


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


def load(directory: Path, allocate: Callable[[int], np.ndarray],
         state_bytes: Callable[[int], int]) -> Iterator[Entry[np.ndarray]]:
    """The saved entries, least recently used first, read one at a time; each state goes straight into
    ``allocate(size)`` (a uint8 array), with no copy on the heap between. Unreadable files, and
    states ``allocate`` cannot make room for (``OSError``), are skipped.

    Nothing is allocated for a size a file only claims: each array's header is checked against the
    bytes the file really holds, and a state against ``state_bytes(len(tokens))``, the most a state of
    that many tokens takes for this model (a 616-byte file claiming 3 GiB once made the server map
    and fill 3 GiB at start)."""
    for path in sorted(directory.glob("prefix-*.npz")):
        if path.name.endswith(".tmp.npz"):
            continue
        try:
            with zipfile.ZipFile(path) as archive:
                on_disk = path.stat().st_size
                tokens = _small_array(archive, "tokens.npy", on_disk).astype(np.int32, copy=False)
                # Files written before the flag was saved hold live entries only.
                superseded = ("superseded.npy" in archive.namelist()
                              and bool(_small_array(archive, "superseded.npy", on_disk)))
                with _member(archive, "state.npy", on_disk) as (member, size):
                    state = _read_bytes_into(member, size, allocate, state_bytes(len(tokens)))
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile):
            continue
        yield Entry(tokens, state, superseded)


@contextlib.contextmanager
def _member(archive: zipfile.ZipFile, name: str, on_disk: int) -> Iterator[tuple[IO[bytes], int]]:
    """An archive member, open, and the bytes it really holds: ``np.savez`` stores members uncompressed,
    so a member's size can be checked against the file's (a compressed one could claim anything)."""
    info = archive.getinfo(name)
    if (info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size
            or info.header_offset + info.compress_size > on_disk):
        raise ValueError(f"{name} is not a stored member within the file")
    with archive.open(info) as member:
        yield member, info.file_size


def _header(member: IO[bytes], size: int) -> tuple[tuple[int, ...], np.dtype]:
    """A ``.npy`` header, checked to describe no more data than the member's ``size`` holds."""
    version = np.lib.format.read_magic(member)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(member)
    if dtype.hasobject or math.prod(shape) * dtype.itemsize > size:
        raise ValueError(f"the header claims {shape} of {dtype}, more than the member's {size} bytes")
    return shape, dtype


def _small_array(archive: zipfile.ZipFile, name: str, on_disk: int) -> np.ndarray:
    with _member(archive, name, on_disk) as (member, size):
        shape, dtype = _header(member, size)
        data = member.read(math.prod(shape) * dtype.itemsize)
        return np.frombuffer(data, dtype=dtype).reshape(shape)


def _read_bytes_into(member: IO[bytes], size: int, allocate: Callable[[int], np.ndarray],
                     most: int) -> np.ndarray:
    """A 1-D uint8 ``.npy`` array of at most ``most`` bytes read from ``member`` into ``allocate(size)``,
    a megabyte at a time."""
    shape, dtype = _header(member, size)
    if dtype != np.uint8 or len(shape) != 1:
        raise ValueError(f"a state must be 1-D uint8, not {dtype} {shape}")
    if shape[0] > most:
        raise ValueError(f"a state of {shape[0]} bytes is larger than this model's {most}")
    state = allocate(shape[0])
    for start in range(0, len(state), _CHUNK):
        chunk = member.read(_CHUNK)
        if len(chunk) != min(_CHUNK, len(state) - start):
            raise ValueError("the state is cut short")
        state[start:start + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
    return state
