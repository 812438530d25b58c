"""Store builds and appends run through a distributed backend (tasks in spawned processes) write
the same bytes, file for file, as the local build."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from opencmap.backends import BlockTask, LocalBackend, Settings
from opencmap.core.gct import GCT
from opencmap.errors import BackendError, StoreError
from opencmap.io import write_gct, write_gctx
from opencmap.io.store.writer import build_block_task
from opencmap.query.store import Store, append_store, build_store

N_GENES, N_LM, N_BING = 120, 30, 90


def _matrix(n: int, seed: int, prefix: str) -> GCT:
    """Genes x signatures with ties, NaNs and -0.0 (the cases ranking must order the same)."""
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(N_GENES, n)).astype(np.float32)
    data[rng.random(data.shape) < 0.01] = np.nan
    data[5, :] = data[6, :]  # ties between genes
    data[7, ::3] = -0.0
    data[8, ::3] = 0.0
    rows = pd.DataFrame(
        {"pr_gene_symbol": [f"G{i}" for i in range(N_GENES)], "pr_is_lm": [int(i < N_LM) for i in range(N_GENES)],
         "pr_is_bing": [int(i < N_BING) for i in range(N_GENES)]},
        index=pd.Index([str(1000 + i) for i in range(N_GENES)], dtype=object),
    )  # fmt: skip
    cols = pd.DataFrame({"pert_id": [f"BRD-{i % 17:03d}" for i in range(n)], "cell_id": ["A375", "PC3"] * (n // 2) + ["MCF7"] * (n % 2)},
                        index=pd.Index([f"{prefix}{i}" for i in range(n)], dtype=object))  # fmt: skip
    return GCT(data, row_meta=rows, col_meta=cols)


def _files(store: Path) -> dict[str, bytes]:
    """Every file of a store by relative path (the lock file aside), the manifest without its
    creation time (the one field that differs between two builds) and its own checksum (which
    covers the creation time)."""
    out = {}
    for f in sorted(store.rglob("*")):
        rel = str(f.relative_to(store))
        if f.is_file() and rel != ".lock":
            out[rel] = f.read_bytes()
    manifest = json.loads(out.pop("manifest.json"))
    manifest.pop("created")
    manifest.pop("manifest_checksum")
    out["manifest.json"] = json.dumps(manifest, sort_keys=True).encode()
    return out


def _assert_same_store(a: Path, b: Path) -> None:
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    assert len(fa) > 10
    for rel in fa:
        assert fa[rel] == fb[rel], rel


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path | GCT]:
    root = tmp_path_factory.mktemp("inputs")
    first, second = _matrix(301, 1, "s"), _matrix(77, 2, "t")
    write_gctx(first, root / "first.gctx")
    write_gct(second, root / "second.gct")
    return {"first": root / "first.gctx", "second_gct": root / "second.gct", "second": second}


def test_build_and_append_through_spawned_tasks_are_byte_identical(inputs, spawned_backend, tmp_path: Path) -> None:
    columns = np.flatnonzero(np.arange(301) % 5 != 2)  # a column subset (build-time filters)
    seen: list[tuple[int, int]] = []
    local = build_store(tmp_path / "local", inputs["first"], block_size=64, columns=columns)
    remote = build_store(tmp_path / "remote", inputs["first"], block_size=64, columns=columns, backend=spawned_backend,
                         progress=lambda done, total: seen.append((done, total)))  # fmt: skip
    assert spawned_backend.tasks_run == -(-len(columns) // 64)  # one task per block, all run elsewhere
    assert seen[-1] == (len(columns), len(columns)) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    _assert_same_store(local.path, remote.path)
    # appends: a text GCT file (read in the workers) and a matrix in memory (its blocks sent with the tasks)
    for source in (inputs["second_gct"], inputs["second"]):
        name = "gct" if isinstance(source, Path) else "mem"
        local_a = build_store(tmp_path / f"local_{name}", inputs["first"], block_size=100)
        remote_a = build_store(tmp_path / f"remote_{name}", inputs["first"], block_size=100, backend=spawned_backend)
        append_store(local_a.path, source, block_size=30)
        before = spawned_backend.tasks_run
        append_store(remote_a.path, source, block_size=30, backend=spawned_backend)
        assert spawned_backend.tasks_run - before == 3
        assert Store(remote_a.path).n_signatures == 301 + 77
        _assert_same_store(local_a.path, remote_a.path)


def test_build_block_task_ranks_its_block_alone(inputs, tmp_path: Path) -> None:
    """A task is plain data and computes exactly its block (here run in this process)."""
    whole = build_store(tmp_path / "whole", inputs["first"], block_size=301, spaces=["lm"])
    cols = {"lm": np.arange(N_LM, dtype=np.int64)}
    spec = {"kind": "gctx", "path": str(inputs["first"]), "positions": np.arange(40, 90), "shape": (N_GENES, 301)}
    params = {"source": spec, "cols": cols, "signature_major": False, "settings": Settings(threads=1)}
    out = build_block_task(BlockTask(str(inputs["first"]), 40, 90, params))
    r, s, by_sig = out["lm"]
    assert r.shape == s.shape == (N_LM, 50) and by_sig is None
    seg = whole.path / "segments" / "seg-00000" / "lm"
    np.testing.assert_array_equal(r, np.load(seg / "ranks.npy")[:, 40:90])
    np.testing.assert_array_equal(s, np.load(seg / "scores.npy")[:, 40:90])
    # a worker that does not see the input where the driver does says so
    elsewhere = {**params, "source": {**spec, "path": str(tmp_path / "not-here.gctx")}}
    with pytest.raises(StoreError, match="a worker must see the input at the driver's path"):
        build_block_task(BlockTask(str(tmp_path / "not-here.gctx"), 40, 90, elsewhere))


class _LosingBackend(LocalBackend):
    distributed = True

    def map_blocks(self, kernel, tasks):
        yield from list(super().map_blocks(kernel, tasks))[:-1]


def test_a_backend_that_loses_a_task_fails_the_build(inputs, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="a task was lost"):
        build_store(tmp_path / "lost", inputs["first"], block_size=100, backend=_LosingBackend())
    assert not (tmp_path / "lost").exists()  # nothing half built
    assert not list(tmp_path.glob(".lost.building-*"))


def test_release_stores_through_spawned_tasks_are_byte_identical(tmp_path: Path, spawned_backend) -> None:
    """Release builders (one segment per folder: a build, then appends) and release appends."""
    from releases.replicas import write_gse70138, write_gse92742

    from opencmap.query.release_store import append_release_store, build_release_store

    first, second = tmp_path / "GSE92742", tmp_path / "GSE70138"
    write_gse92742(first, gz=False)
    write_gse70138(second, gz=False)
    local, _ = build_release_store(tmp_path / "local", [first, second], block_size=37)
    remote, _ = build_release_store(tmp_path / "remote", [first, second], block_size=37, backend=spawned_backend)
    assert len(remote.manifest["segments"]) == 2 and spawned_backend.tasks_run > 2
    _assert_same_store(local.path, remote.path)
    local_a, _ = build_release_store(tmp_path / "local_a", [first], block_size=64)
    remote_a, _ = build_release_store(tmp_path / "remote_a", [first], block_size=64, backend=spawned_backend)
    append_release_store(local_a.path, second, block_size=64)
    before = spawned_backend.tasks_run
    append_release_store(remote_a.path, second, block_size=64, backend=spawned_backend)
    assert spawned_backend.tasks_run > before
    _assert_same_store(local_a.path, remote_a.path)
