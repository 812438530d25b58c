"""tau backgrounds: built from the store's exemplars, stored per level, used by queries."""

from __future__ import annotations

import numpy as np
import pytest

from opencmap.errors import StoreError
from opencmap.query.background import build_background, exemplar_mask, load_background
from opencmap.query.engine import Engine
from opencmap.query.genesets import Query
from opencmap.query.store import Store, append_store, build_store


def test_levels_stored_and_listed(built_store):
    assert built_store.info()["backgrounds"] == ["pcl_cell", "pcl_summary", "pert_cell", "pert_summary", "sig"]
    built_store.verify()
    sig = load_background(built_store, "sig")
    assert len(sig.ids) == built_store.n_signatures
    n_exemplars = int(exemplar_mask(built_store.sig_info).sum())
    cells = built_store.sig_info["cell_id"].to_numpy()
    is_ex = exemplar_mask(built_store.sig_info)
    for r in (0, 30, 89):
        same_cell = int((is_ex & (cells == cells[r])).sum()) - int(is_ex[r])  # self excluded
        assert sig.counts[r] == same_cell
        row = np.asarray(sig.values[r, : sig.counts[r]])
        assert (np.diff(row) >= 0).all() and (row >= 0).all()
    ps = load_background(built_store, "pert_summary")
    assert (ps.counts == n_exemplars).all()  # not cell-specific


def test_tau_is_exact_rank_in_background(built_store, level5):
    _, _, prog = level5
    q = Query("A", up=tuple(prog["A_up"][:20]), down=tuple(prog["A_dn"][:20]))
    res = Engine(built_store).run(q, summaries=False)
    m = res.level("sig").metrics
    bg = load_background(built_store, "sig")
    for r in range(0, built_store.n_signatures, 11):
        x = m["ncs"][r, 0]
        ref = np.asarray(bg.values[r, : bg.counts[r]])
        expected = np.sign(x) * 100.0 * np.sum(ref < abs(x)) / len(ref)
        assert m["tau"][r, 0] == pytest.approx(expected, abs=1e-4)


def test_query_sigs_and_errors(built_store, tmp_path, level5):
    gct, info, _ = level5
    store = build_store(tmp_path / "s", gct, sig_info=info)
    with pytest.raises(StoreError, match="at least 2"):
        build_background(store, query_sigs=[store.sig_ids[0]])
    entries = build_background(store, query_sigs=list(store.sig_ids[:10]), same_cell=False, symmetric=False)
    assert entries["sig"]["n_queries"] == 10
    assert set(entries) == {"sig", "pert_cell", "pert_summary"}  # no PCLs given
    assert (load_background(Store(store.path), "sig").counts >= 9).all()


def test_append_drops_backgrounds(level5, tmp_path):
    gct, info, _ = level5
    store = build_store(tmp_path / "s", gct.take(cols=np.arange(60)), sig_info=info.iloc[:60])
    build_background(store)
    assert load_background(Store(store.path), "sig") is not None
    store = append_store(store.path, gct.take(cols=np.arange(60, 90)), sig_info=info.iloc[60:])
    assert load_background(store, "sig") is None
    assert not (store.path / "backgrounds" / "sig").exists()
    res = Engine(store).run(Query("q", up=tuple(store.space().gene_ids[:12]), down=tuple(store.space().gene_ids[-12:])))
    assert "tau" not in res.level("sig").metrics
    assert any("background" in n for n in res.notes)


def test_cmap_grid_tau_close_to_exact(built_store, level5):
    _, _, prog = level5
    q = Query("A", up=tuple(prog["A_up"][:20]), down=tuple(prog["A_dn"][:20]))
    engine = Engine(built_store)
    exact = engine.run(q, summaries=False, fdr=False).level("sig").metrics["tau"][:, 0]
    grid = engine.run(q, summaries=False, fdr=False, tau_method="cmap").level("sig").metrics["tau"][:, 0]
    counts = load_background(built_store, "sig").counts
    # the grid loses at most one reference count, except below the second-smallest background
    # value, where CMap's table is a straight line through 0 (spec §6.6)
    close = np.abs(exact - grid) <= 100.0 / counts + 1.0
    assert close.mean() > 0.9
    assert np.abs(grid).max() <= 100 and np.sign(exact[close & (exact != 0)]).tolist() == np.sign(grid[close & (exact != 0)]).tolist()


def test_public_api_exports():
    import opencmap.query as q

    for name in q.__all__:
        assert hasattr(q, name), name


def test_aligned_rows_are_cached_and_identity_is_not_copied(built_store):
    bg = load_background(built_store, "sig")
    n = len(bg.ids)
    have, values, counts = bg.aligned(np.arange(n))
    assert values is bg.values  # the memory-mapped array itself
    assert bg.aligned(np.arange(n))[1] is values  # cached
    rows = np.array([3, -1, 0, 7])
    have, values, counts = bg.aligned(rows)
    np.testing.assert_array_equal(have, [0, 2, 3])
    np.testing.assert_array_equal(values, np.asarray(bg.values)[[3, 0, 7]])
    np.testing.assert_array_equal(counts, np.asarray(bg.counts)[[3, 0, 7]])
    x = np.full((4, 2), 0.5, dtype=np.float32)
    t = bg.tau(x, rows)
    assert np.isnan(t[1]).all() and np.isfinite(t[[0, 2, 3]]).all()
    full = bg.tau(np.full((n, 2), 0.5, dtype=np.float32), np.arange(n))
    np.testing.assert_array_equal(t[[0, 2, 3]], full[[3, 0, 7]])


def test_kept_stale_background_is_noted_in_results(level5, tmp_path):
    gct, info, _ = level5
    store = build_store(tmp_path / "s", gct.take(cols=np.arange(60)), sig_info=info.iloc[:60])
    build_background(store)
    store = append_store(store.path, gct.take(cols=np.arange(60, 90)), sig_info=info.iloc[60:], keep_backgrounds=True)
    res = Engine(store).run(Query("q", up=tuple(store.space().gene_ids[:12]), down=tuple(store.space().gene_ids[-12:])))
    tau = res.level("sig").metrics["tau"]
    assert np.isfinite(tau[:60]).any() and np.isnan(tau[60:]).all()  # appended signatures: no tau yet
    assert any("appended" in n and "30" in n for n in res.notes)
