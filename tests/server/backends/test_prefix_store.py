"""The prefix cache's files: a round trip, and what a crash or a foreign file leaves behind is skipped."""

from __future__ import annotations

import numpy as np
from hammer.server.backends.prefix_store import load, model_key, save


def entry(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(n, dtype=np.int32), np.full(n * 3, n, dtype=np.uint8)


def test_entries_come_back_in_order(tmp_path):
    assert save(tmp_path, [entry(5), entry(9)]) == 2
    loaded = load(tmp_path)
    assert [len(tokens) for tokens, _ in loaded] == [5, 9]
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(loaded, [entry(5), entry(9)]))


def test_saving_replaces_what_was_there(tmp_path):
    save(tmp_path, [entry(5), entry(9)])
    save(tmp_path, [entry(3)])
    assert [len(tokens) for tokens, _ in load(tmp_path)] == [3]


def test_half_written_and_unreadable_files_are_skipped(tmp_path):
    save(tmp_path, [entry(4)])
    (tmp_path / "prefix-0002.tmp.npz").write_bytes(b"half")
    (tmp_path / "prefix-0003.npz").write_bytes(b"not an npz")
    assert [len(tokens) for tokens, _ in load(tmp_path)] == [4]
    assert load(tmp_path / "missing") == []


def test_the_model_key_follows_the_file(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"one")
    first = model_key(str(model))
    model.write_bytes(b"other")
    assert model_key(str(model)) != first
