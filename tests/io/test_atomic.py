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


# ---------------------------------------------------------------------------------- folders
def _tree(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_dir_success_creates_and_replaces_whole(tmp_path):
    from opencmap.io.atomic import atomic_write_dir

    out = tmp_path / "sub" / "results"
    with atomic_write_dir(out) as tmp:
        assert tmp.parent == out.parent and not out.exists()
        (tmp / "a.tsv").write_text("1")
        (tmp / "old.tsv").write_text("2")
    assert _tree(out) == {"a.tsv": b"1", "old.tsv": b"2"}
    with atomic_write_dir(out, overwrite=True) as tmp:
        (tmp / "a.tsv").write_text("new")
    assert _tree(out) == {"a.tsv": b"new"}  # nothing of the earlier folder is left
    assert [p.name for p in out.parent.iterdir()] == ["results"]  # no temporary or old folder behind


def test_dir_refuses_non_empty_without_overwrite_and_files(tmp_path):
    from opencmap.errors import ConfigError
    from opencmap.io.atomic import atomic_write_dir, check_output_dir

    out = tmp_path / "results"
    out.mkdir()
    with atomic_write_dir(out) as tmp:  # an empty folder may be used
        (tmp / "x").write_text("x")
    with pytest.raises(ConfigError, match=r"results is not empty; give --overwrite"):
        check_output_dir(out, flag="--overwrite")
    with pytest.raises(ConfigError, match="not empty"), atomic_write_dir(out):
        raise AssertionError("must not run")
    afile = tmp_path / "file.txt"
    afile.write_text("keep")
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match=r"file\.txt exists and is not a folder"):
            check_output_dir(afile, overwrite=overwrite)
    with pytest.raises(ConfigError, match=r"file\.txt is a file, not a folder"):
        check_output_dir(afile / "below")
    assert afile.read_text() == "keep" and _tree(out) == {"x": b"x"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "results"]


def test_dir_failure_mid_write_keeps_the_old_folder(tmp_path):
    from opencmap.io.atomic import atomic_write_dir

    out = tmp_path / "results"
    out.mkdir()
    (out / "sig.tsv").write_text("old run")
    with pytest.raises(OSError, match="injected"), atomic_write_dir(out, overwrite=True) as tmp:
        (tmp / "sig.tsv").write_text("new run, half")
        raise OSError("injected")
    assert _tree(out) == {"sig.tsv": b"old run"}
    assert [p.name for p in tmp_path.iterdir()] == ["results"]


def test_dir_failed_swap_puts_the_old_folder_back(tmp_path, monkeypatch):
    import os

    from opencmap.io import atomic

    out = tmp_path / "results"
    out.mkdir()
    (out / "sig.tsv").write_text("old run")
    real = os.replace
    calls = []

    def flaky(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the rename of the new folder into place
            raise OSError("injected rename failure")
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", flaky)
    with pytest.raises(OSError, match="injected"), atomic.atomic_write_dir(out, overwrite=True) as tmp:
        (tmp / "sig.tsv").write_text("new run")
    monkeypatch.setattr(atomic.os, "replace", real)
    assert _tree(out) == {"sig.tsv": b"old run"}
    assert [p.name for p in tmp_path.iterdir()] == ["results"]


def test_overwrite_replaces_only_results_folders_and_never_the_current_directory(tmp_path, monkeypatch):
    from opencmap.errors import ConfigError
    from opencmap.io.atomic import check_output_dir

    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    with pytest.raises(ConfigError, match=r"home is not empty and is not a results folder \(none of queries\.tsv\)"):
        check_output_dir(home, overwrite=True, replaceable=("queries.tsv",))
    check_output_dir(home, overwrite=True)  # no markers asked for: any folder
    (home / "queries.tsv").write_text("q")
    check_output_dir(home, overwrite=True, replaceable=("queries.tsv",))
    monkeypatch.chdir(home)
    for target in (home, tmp_path, "."):
        with pytest.raises(ConfigError, match="holds the current directory"):
            check_output_dir(target, overwrite=True)
    assert (home / "thesis.tex").read_text() == "years of work"
