"""The running-sum curve (plots): spec §9.1 values, agreement with the engine's ES, brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opencmap.core.gct import GCT
from opencmap.errors import GeneSetError, IdNotFoundError
from opencmap.query.running_sum import running_sum, running_sum_curve
from opencmap.query.store import build_store

V91 = np.array([3.0, 2.5, 2.0, 1.0, 0.5, -0.2, -0.8, -1.5, -2.0, -3.0])


def test_spec_9_1_pre_and_post_hit_values():
    _, _, pre, post = running_sum_curve(np.array([1, 3, 5]), V91[[0, 2, 4]], 10)
    np.testing.assert_allclose(post, [0.545455, 0.766234, 0.714286], atol=1e-6)
    np.testing.assert_allclose(pre, [0, 0.402597, 0.623377], atol=1e-6)
    x, y, pre, post = running_sum_curve(np.array([10, 7, 9]), V91[[9, 6, 8]], 10)  # unsorted input
    np.testing.assert_allclose(post, [-0.719212, -0.517241, 0], atol=1e-6)
    np.testing.assert_allclose(pre, [-0.857143, -0.862069, -0.517241], atol=1e-6)
    assert x.tolist() == [0, 6, 7, 8, 9, 9, 10, 10] and y[0] == 0 and y[-1] == pytest.approx(0, abs=1e-12)


def _walk(ranks, weights, n):
    """Obvious reference: step through every position of the list."""
    hits = dict(zip(ranks.tolist(), np.abs(weights).tolist(), strict=True))
    total = sum(hits.values())
    miss = 1.0 / (n - len(hits)) if len(hits) < n else 1.0
    y, out = 0.0, [0.0]
    for pos in range(1, n + 1):
        y += hits[pos] / total if pos in hits else -miss
        out.append(y)
    return np.array(out)


@settings(max_examples=60, deadline=None)
@given(st.integers(5, 60).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(1, n), min_size=1, max_size=n))), st.integers(0, 2**31))
def test_curve_matches_a_position_by_position_walk(n_and_hits, seed):
    n, hits = n_and_hits
    ranks = np.array(sorted(hits))
    weights = np.random.default_rng(seed).uniform(0.1, 3.0, len(ranks))
    x, y, _, _ = running_sum_curve(ranks, weights, n)
    full = _walk(ranks, weights, n)
    # every corner point lies on the walk, and the walk is linear between corners
    np.testing.assert_allclose(np.interp(np.arange(n + 1), x, y), full, atol=1e-9)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    rng = np.random.default_rng(3)
    data = rng.normal(size=(40, 6)).astype(np.float32)
    genes = pd.DataFrame({"pr_gene_symbol": [f"G{i}" for i in range(40)]}, index=[str(100 + i) for i in range(40)])
    info = pd.DataFrame({"pert_id": ["p"] * 6, "cell_id": ["c"] * 6, "pert_type": ["trt_cp"] * 6}, index=[f"s{i}" for i in range(6)])
    gct = GCT(data, rids=genes.index, cids=info.index, row_meta=genes, col_meta=info)
    return build_store(tmp_path_factory.mktemp("rs") / "store", gct, spaces=["full"]), data


@pytest.mark.parametrize("weighted", [True, False])
def test_es_and_leading_edge_agree_with_the_engine(small_store, weighted):
    from opencmap.query.engine import run_query

    store, _ = small_store
    up = [str(100 + i) for i in (1, 5, 9, 13, 22)]
    down = [str(100 + i) for i in (2, 7, 30, 31, 39)]
    res = run_query(store, up, down, metric="wtcs" if weighted else "cs", min_genes=1, tau=False, fdr=False, summaries=False)
    sig = res.to_frame("sig")
    for j, sig_id in enumerate(sig["sig_id"]):
        curves = running_sum(store, sig_id, up=up, down=down, weighted=weighted)
        for direction, col in (("up", "es_up"), ("down", "es_dn")):
            c = curves[direction]
            assert c.es == pytest.approx(sig[col].iloc[j], abs=1e-6)
            assert c.y[np.argmax(np.abs(c.y))] == pytest.approx(c.es, abs=1e-9)
            lead_col = "leadf_up" if direction == "up" else "leadf_dn"
            assert len(c.leading_edge) / 5 == pytest.approx(sig[lead_col].iloc[j], abs=1e-6)
            assert list(c.hit_ranks) == sorted(c.hit_ranks)


def test_errors(small_store):
    store, _ = small_store
    with pytest.raises(IdNotFoundError):
        running_sum(store, "nope", up=["101"])
    with pytest.raises(GeneSetError, match="no up gene"):
        running_sum(store, "s0", up=["999999"])
