"""Wide text metadata (CMap's distil_id lists) is stored compressed: small files, same values,
readable by cmapPy (pinned venv of tools/cmappy_interop.py, skipped when it is not built)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from opencmap.core.gct import GCT
from opencmap.io import read_gctx, write_gctx

REPO = Path(__file__).resolve().parents[2]


def _wide_gct(n: int = 2000) -> tuple[GCT, list[str]]:
    rng = np.random.default_rng(1)
    lens = rng.integers(20, 200, n)
    lens[0] = 2159  # the longest distil_id list of a real GSE92742 sig_info
    distil = ["|".join(f"CPC006_A375_6H_X{i % 3 + 1}_B3:{chr(65 + i % 16)}{i % 24 + 1:02d}" for i in range(k // 30 + 1))[:k] for k in lens]
    rids = [f"SIG{i}" for i in range(n)]
    row_meta = pd.DataFrame({"pert_iname": [f"cmpd{i}" for i in range(n)], "distil_id": distil,
                             "pert_idose": ["10 uM"] * n, "distil_nsample": rng.integers(1, 9, n)}, index=rids)
    data = rng.normal(size=(n, 3)).astype(np.float32)
    col_meta = pd.DataFrame({"n_up": [10, 20, 30]}, index=["q1", "q2", "q3"])
    return GCT(data, rids=rids, cids=["q1", "q2", "q3"], row_meta=row_meta, col_meta=col_meta), distil


def test_wide_text_is_compressed_and_reads_back(tmp_path):
    gct, distil = _wide_gct()
    path = tmp_path / "sig_tau.gctx"
    write_gctx(gct, path)
    with h5py.File(path, "r") as h5:
        wide = h5["0/META/ROW/distil_id"]
        # fixed-length strings of the longest value, as CMap writes
        assert wide.dtype.itemsize == max(len(d) for d in distil) > 1500
        assert wide.compression == "gzip"
        assert h5["0/META/ROW/pert_idose"].compression is None  # narrow fields: point reads stay cheap
    # uncompressed the distil_id field alone is 2000 x 1799 bytes = 3.6 MB
    assert path.stat().st_size < 0.5e6
    back = read_gctx(path)
    assert list(back.row_meta["distil_id"]) == distil
    np.testing.assert_array_equal(back.data, gct.data)
    pd.testing.assert_frame_equal(back.row_meta, gct.row_meta, check_dtype=False)
    # a point read of a few rows decompresses what it needs and gives the same values
    part = read_gctx(path, rid=["SIG0", "SIG7"])
    assert list(part.row_meta["distil_id"]) == [distil[0], distil[7]]


def _cmappy_python() -> Path | None:
    folder = Path(os.environ.get("OPENCMAP_CMAPPY_VENV") or Path.home() / ".cache" / "opencmap" / "cmappy-venv")
    python = folder / "bin" / "python"
    return python if python.exists() and (folder / "opencmap-pins.txt").exists() else None


@pytest.mark.skipif(_cmappy_python() is None, reason="pinned cmapPy venv not built (python tools/cmappy_interop.py builds it)")
def test_cmappy_reads_compressed_wide_text(tmp_path):
    spec = importlib.util.spec_from_file_location("cmappy_interop", REPO / "tools" / "cmappy_interop.py")
    interop = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(interop)  # type: ignore[union-attr]
    gct, _ = _wide_gct(500)
    path = tmp_path / "wide.gctx"
    write_gctx(gct, path)
    seen = interop.cmappy(_cmappy_python(), {"op": "read", "path": str(path), "out": str(tmp_path / "seen")})
    assert interop.compare(read_gctx(path), seen, atol=0) == []
    assert seen["row_meta"]["distil_id"][0] == gct.row_meta["distil_id"].iloc[0]
