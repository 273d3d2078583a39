"""The prefix cache's files: a round trip, and what a crash or a foreign file leaves behind is skipped."""

from __future__ import annotations

from typing import Iterable

import io
import zipfile

import numpy as np
import pytest
from hammer.server.backends.prefix_cache import Entry
from hammer.server.backends.prefix_store import load, model_key, save


def entry(n: int, superseded: bool = False) -> Entry[np.ndarray]:
    return Entry(np.arange(n, dtype=np.int32), np.full(n * 3, n, dtype=np.uint8), superseded)


def on_heap(size: int) -> np.ndarray:
    return np.empty(size, dtype=np.uint8)


def fits(tokens: int) -> int:
    """The model's state size for ``tokens`` in these tests (``entry`` keeps 3 bytes a token)."""
    return tokens * 3


def lengths(entries: Iterable[Entry[np.ndarray]]) -> list[int]:
    return [len(e.tokens) for e in entries]


def test_entries_come_back_in_order(tmp_path):
    assert save(tmp_path, [entry(5), entry(9, superseded=True)]) == 2
    loaded = list(load(tmp_path, on_heap, fits))
    assert lengths(loaded) == [5, 9]
    assert all(np.array_equal(a.state, b.state) for a, b in zip(loaded, [entry(5), entry(9)]))
    assert [e.superseded for e in loaded] == [False, True]


def test_a_file_without_the_superseded_flag_loads_as_live(tmp_path):
    np.savez(tmp_path / "prefix-0001.npz", tokens=np.arange(4, dtype=np.int32), state=np.zeros(8, np.uint8))
    assert [(len(e.tokens), e.superseded) for e in load(tmp_path, on_heap, fits)] == [(4, False)]


def test_each_state_is_read_into_the_memory_the_caller_gives(tmp_path):
    save(tmp_path, [entry(5), entry(0), entry(9)])
    given: list[np.ndarray] = []

    def allocate(size: int) -> np.ndarray:
        if size == 0:
            raise OSError("no room for an empty state")  # what an anonymous mapping of 0 bytes raises
        given.append(np.zeros(size, dtype=np.uint8))
        return given[-1]

    loaded = list(load(tmp_path, allocate, fits))
    assert lengths(loaded) == [5, 9]  # the state allocate refused is skipped, the rest still load
    assert [e.state is buffer for e, buffer in zip(loaded, given)] == [True, True]
    assert np.array_equal(loaded[1].state, entry(9).state)


def test_a_state_that_is_not_bytes_is_skipped(tmp_path):
    np.savez(tmp_path / "prefix-0001.npz", tokens=np.arange(4, dtype=np.int32), state=np.zeros(8, np.float32))
    assert list(load(tmp_path, on_heap, fits)) == []


def test_saving_replaces_what_was_there(tmp_path):
    save(tmp_path, [entry(5), entry(9)])
    save(tmp_path, [entry(3)])
    assert lengths(load(tmp_path, on_heap, fits)) == [3]


def test_half_written_and_unreadable_files_are_skipped(tmp_path):
    save(tmp_path, [entry(4)])
    (tmp_path / "prefix-0002.tmp.npz").write_bytes(b"half")
    (tmp_path / "prefix-0003.npz").write_bytes(b"not an npz")
    assert lengths(load(tmp_path, on_heap, fits)) == [4]
    assert list(load(tmp_path / "missing", on_heap, fits)) == []


def test_the_model_key_follows_the_file(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"one")
    first = model_key(str(model))
    model.write_bytes(b"other")
    assert model_key(str(model)) != first


def npy(array: np.ndarray, claimed_shape: tuple[int, ...] | None = None) -> bytes:
    """An ``.npy`` file of ``array``, its header claiming ``claimed_shape`` when given."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(array.dtype),
                                               "fortran_order": False, "shape": claimed_shape or array.shape})
    return out.getvalue() + array.tobytes()


def crafted(path, tokens: bytes, state: bytes, compression: int = zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        archive.writestr("tokens.npy", tokens)
        archive.writestr("state.npy", state)


@pytest.mark.parametrize("tokens,state,compression", [
    # a 616-byte-sized file whose state header claims 3 GiB
    (npy(np.arange(4, dtype=np.int32)), npy(np.zeros(8, np.uint8), (3 << 30,)), zipfile.ZIP_STORED),
    # the token array's header claims a billion tokens
    (npy(np.arange(4, dtype=np.int32), (1 << 30,)), npy(np.zeros(8, np.uint8)), zipfile.ZIP_STORED),
    # compressed members: their sizes cannot be checked against the file's
    (npy(np.arange(4, dtype=np.int32)), npy(np.zeros(12, np.uint8)), zipfile.ZIP_DEFLATED),
    # honest sizes, but a state larger than the model's for 4 tokens
    (npy(np.arange(4, dtype=np.int32)), npy(np.zeros(13, np.uint8)), zipfile.ZIP_STORED),
])
def test_sizes_a_file_only_claims_allocate_nothing(tmp_path, tokens, state, compression):
    crafted(tmp_path / "prefix-0001.npz", tokens, state, compression)
    asked: list[int] = []

    def allocate(size: int) -> np.ndarray:
        asked.append(size)
        return np.zeros(size, dtype=np.uint8)

    assert (tmp_path / "prefix-0001.npz").stat().st_size < 1024
    assert list(load(tmp_path, allocate, fits)) == [] and asked == []


def test_a_crafted_file_beside_good_ones_leaves_them_loading(tmp_path):
    save(tmp_path, [entry(4)])
    crafted(tmp_path / "prefix-0002.npz", npy(np.arange(4, dtype=np.int32)), npy(np.zeros(8, np.uint8), (3 << 30,)))
    crafted(tmp_path / "prefix-0003.npz", npy(np.arange(4, dtype=np.int32)), npy(np.zeros(12, np.uint8)))
    assert lengths(load(tmp_path, on_heap, fits)) == [4, 4]  # the honest hand-made file loads too
