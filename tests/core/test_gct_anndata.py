"""GCT <-> AnnData <-> GCT: exact round trips, in memory and through .h5ad files."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from opencmap.core.gct import GCT
from opencmap.errors import ValidationError

anndata = pytest.importorskip("anndata")


def _gct(dtype=np.float32) -> GCT:
    rng = np.random.default_rng(1)
    data = rng.normal(size=(20, 7)).astype(dtype)
    data[3, 2] = np.nan
    rids = [str(v) for v in rng.choice(50_000, 20, replace=False)]  # Entrez-like integer ids stay text
    cids = [f"CPC006_A375_6H:BRD-K{i:05d}:10" for i in range(7)]
    row_meta = pd.DataFrame({"pr_gene_symbol": [f"G{i}" for i in range(20)], "pr_is_lm": rng.integers(0, 2, 20)}, index=rids)
    col_meta = pd.DataFrame(
        {
            "pert_iname": [None if i == 2 else f"drug-{i}" for i in range(7)],
            "pert_dose": rng.uniform(0.1, 10, 7),
            "pert_time": pd.array([24] * 6 + [None], dtype="Int64"),
        },
        index=cids,
    )
    return GCT(data, row_meta=row_meta, col_meta=col_meta, dtype=dtype)


def test_orientation_and_metadata():
    g = _gct()
    a = g.to_anndata()
    assert a.shape == (7, 20)  # samples x genes
    np.testing.assert_array_equal(a.X, g.data.T)
    assert list(a.obs_names) == list(g.cids) and list(a.var_names) == list(g.rids)
    assert list(a.obs.columns) == ["pert_iname", "pert_dose", "pert_time"]
    assert a.X.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_in_memory_exact(dtype):
    g = _gct(dtype)
    back = GCT.from_anndata(g.to_anndata())
    assert back.data.dtype == dtype
    assert back.equals(g)  # values (NaN == NaN), ids and metadata identical
    pd.testing.assert_frame_equal(back.col_meta, g.col_meta)
    pd.testing.assert_frame_equal(back.row_meta, g.row_meta)


def test_round_trip_through_h5ad_exact(tmp_path):
    from opencmap.io.h5ad import read_h5ad, write_h5ad

    g = _gct()
    write_h5ad(g.to_anndata(), tmp_path / "g.h5ad")
    back = GCT.from_anndata(read_h5ad(tmp_path / "g.h5ad"))
    assert back.equals(g)  # GCT.equals: pandas' frame equality (a missing text value is missing, None or NaN)
    assert back.data.tobytes() == g.data.tobytes()
    assert list(back.col_meta.dtypes) == list(g.col_meta.dtypes) and list(back.row_meta.dtypes) == list(g.row_meta.dtypes)
    # and the other way: an AnnData made elsewhere survives AnnData -> GCT -> AnnData
    a = anndata.AnnData(np.arange(12, dtype=np.float32).reshape(3, 4),
                        obs=pd.DataFrame({"cell": ["a", "b", "c"]}, index=["s1", "s2", "s3"]),
                        var=pd.DataFrame({"sym": list("wxyz")}, index=["1", "2", "3", "4"]))
    again = GCT.from_anndata(a).to_anndata()
    np.testing.assert_array_equal(again.X, a.X)
    pd.testing.assert_frame_equal(again.obs, a.obs, check_names=False, check_index_type=False)
    pd.testing.assert_frame_equal(again.var, a.var, check_names=False, check_index_type=False)


def test_categorical_metadata_comes_back_plain():
    a = anndata.AnnData(np.zeros((3, 2), dtype=np.float32),
                        obs=pd.DataFrame({"cell": pd.Categorical(["a", "b", "a"]), "dose": pd.Categorical([1, None, 10])}, index=["s1", "s2", "s3"]))
    g = GCT.from_anndata(a)
    assert g.col_meta["cell"].tolist() == ["a", "b", "a"] and pd.api.types.is_string_dtype(g.col_meta["cell"])
    assert not isinstance(g.col_meta["cell"].dtype, pd.CategoricalDtype)
    assert g.col_meta["dose"].iloc[0] == 1 and pd.isna(g.col_meta["dose"].iloc[1])


def test_sparse_and_layers():
    from scipy import sparse

    dense = np.array([[0, 1.5, 0], [2.0, 0, 0]], dtype=np.float32)
    a = anndata.AnnData(sparse.csr_matrix(dense), layers={"z": dense * 2})
    assert np.array_equal(GCT.from_anndata(a).data, dense.T)
    assert np.array_equal(GCT.from_anndata(a, layer="z").data, dense.T * 2)
    with pytest.raises(ValidationError, match="no layer 'nope'"):
        GCT.from_anndata(a, layer="nope")


def test_core_does_not_import_anndata():
    code = "import sys, opencmap.core.gct, opencmap.query.result; print('anndata' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@st.composite
def gcts(draw):
    n_rows = draw(st.integers(1, 8))
    n_cols = draw(st.integers(1, 6))
    data = draw(arrays(np.float32, (n_rows, n_cols), elements=st.floats(width=32, allow_nan=True, allow_infinity=True)))
    ids = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=8)
    rids = draw(st.lists(ids, min_size=n_rows, max_size=n_rows, unique=True))
    cids = draw(st.lists(ids, min_size=n_cols, max_size=n_cols, unique=True))
    row_meta = pd.DataFrame({"symbol": draw(st.lists(st.text(max_size=5), min_size=n_rows, max_size=n_rows))}, index=rids)
    col_meta = pd.DataFrame({"dose": draw(st.lists(st.floats(0, 10), min_size=n_cols, max_size=n_cols))}, index=cids)
    return GCT(data, row_meta=row_meta, col_meta=col_meta)


@settings(max_examples=40, deadline=None)
@given(gcts())
def test_round_trip_property(g):
    back = GCT.from_anndata(g.to_anndata())
    assert back.equals(g)
    assert back.data.tobytes() == g.data.tobytes()
