"""Helpers for the I/O tests: small GCTs with typed metadata and a loose metadata comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from opencmap.core.gct import GCT


def make_gct(n_rows: int = 7, n_cols: int = 5, *, seed: int = 0) -> GCT:
    """A GCT with integer-like string ids, int/float/str metadata and some missing values."""
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n_rows, n_cols)).astype(np.float32)
    if data.size:
        data.flat[0] = np.nan
    rids = [str(780 + i) for i in range(n_rows)]
    cids = [f"PLATE:A{i:02d}" for i in range(n_cols)]
    row_meta = pd.DataFrame(
        {
            "pr_gene_symbol": pd.array([f"G{i}" for i in range(n_rows)], dtype="str"),
            "pr_is_lm": np.arange(n_rows, dtype=np.int64) % 2,
            "score": np.linspace(0.5, 2.5, n_rows),
        },
        index=rids,
    )
    pert_dose = np.linspace(0.1, 10, n_cols)
    if n_cols:
        pert_dose[-1] = np.nan
    col_meta = pd.DataFrame(
        {
            "pert_iname": pd.array([None if i == 1 else f"drug {i}" for i in range(n_cols)], dtype="str"),
            "pert_dose": pert_dose,
            "pert_time": np.full(n_cols, 24, dtype=np.int64),
        },
        index=cids,
    )
    return GCT(data, row_meta=row_meta, col_meta=col_meta)


def same_values(x: pd.Series, y: pd.Series, *, atol: float = 1e-4) -> bool:
    """Metadata columns equal: numbers within ``atol`` (relative 1e-5), text exactly, missing = missing."""
    xn = pd.to_numeric(x.astype(object), errors="coerce")
    yn = pd.to_numeric(y.astype(object), errors="coerce")
    if xn.notna().sum() == x.notna().sum() and yn.notna().sum() == y.notna().sum():
        return bool(np.allclose(xn.to_numpy(float), yn.to_numpy(float), rtol=1e-5, atol=atol, equal_nan=True))
    xs = x.astype(object).where(x.notna(), "<missing>").astype(str).to_numpy()
    ys = y.astype(object).where(y.notna(), "<missing>").astype(str).to_numpy()
    return bool((xs == ys).all())


@pytest.fixture
def small_gct() -> GCT:
    return make_gct()


@pytest.fixture
def gct_factory():
    """``make_gct(n_rows, n_cols, seed=...)``."""
    return make_gct


@pytest.fixture
def meta_equal():
    """``same_values(x, y, atol=...)`` for metadata columns."""
    return same_values
