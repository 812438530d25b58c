"""Atomic writes (opencmap.io.atomic)."""

from __future__ import annotations

import pytest

from opencmap.io.atomic import AtomicFile, atomic_write_path


def test_success_renames(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_write_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_text("hello")
        assert not target.exists()
    assert target.read_text() == "hello"
    assert list(tmp_path.iterdir()) == [target]


def test_failure_removes_temp_and_keeps_old(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(ValueError):
        with atomic_write_path(target) as tmp:
            tmp.write_text("partial")
            raise ValueError("boom")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_file_discard(tmp_path):
    f = AtomicFile(tmp_path / "x")
    f.path.write_text("data")
    f.discard()
    assert list(tmp_path.iterdir()) == []
    g = AtomicFile(tmp_path / "y")
    g.path.write_text("data")
    g.commit()
    assert (tmp_path / "y").read_text() == "data"
