"""The block runner: every registered method runs through it, by the access pattern it declares."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from opencmap.errors import ConfigError
from opencmap.query.engine import Engine
from opencmap.query.genesets import Query, validate_query
from opencmap.query.methods import ACCESS_PATTERNS, METHOD_NAMES, get_method
from opencmap.query.methods.wtcs import score_sets
from opencmap.query.reference import ReferenceIndex
from opencmap.query.runner import run_blocks

SCORE_ONLY = {"ncs": False, "fdr": False, "tau": False, "summaries": False}


@pytest.fixture(scope="module")
def batch(built_store, level5):
    _, _, prog = level5
    space = built_store.space()
    lookup = ReferenceIndex.of(built_store).lookup
    queries = [
        Query("A", up=tuple(prog["A_up"][:20]), down=tuple(prog["A_dn"][:20])),
        Query("B", up=tuple(prog["B_up"][:15])),
        Query("C", down=tuple(prog["B_dn"][:12])),
    ]
    valid = [validate_query(q, space, lookup, min_genes=5) for q in queries]
    return queries, valid, space


def test_every_method_declares_its_access_pattern():
    for name in METHOD_NAMES:
        m = get_method(name)
        assert m.access in ACCESS_PATTERNS
        assert (m.access == "vectors") == (m.kind == "vector")
        assert (m.block_kernel is not None) == (m.access == "fused_sets")
    assert get_method("wtcs").access == get_method("cs").access == "fused_sets"
    with pytest.raises(ConfigError, match="access"):
        dataclasses.replace(get_method("lamb"), access="fused_sets")  # no block kernel


def test_wtcs_score_runs_through_the_registry(built_store, batch):
    """The registry entry's ``score`` is what combines the sets (it was bypassed before)."""
    queries, valid, space = batch
    wtcs = get_method("wtcs")
    calls = []

    def counting(*args, **kw):
        calls.append(kw.get("es_tail"))
        return wtcs.score(*args, **kw)

    out = run_blocks(built_store, dataclasses.replace(wtcs, score=counting), valid, {"es_tail": "both"}, space=space.name,
                     n_features=space.n_features, tails=["both", "up", "down"])  # fmt: skip
    assert set(calls) == {"both", "up", "down"} and len(calls) % 3 == 0
    ref = Engine(built_store).run(queries, min_genes=5, **SCORE_ONLY).level("sig").metrics
    for name in ("es_up", "es_dn", "leadf_up", "leadf_dn"):
        np.testing.assert_array_equal(out[name], ref[name])
    np.testing.assert_array_equal(out["score"], ref["wtcs"])


@pytest.mark.parametrize("weighted", [True, False])
def test_fused_walk_equals_gathered_sets(built_store, batch, weighted):
    _, valid, space = batch
    method = get_method("wtcs" if weighted else "cs")
    gathered = dataclasses.replace(method, access="gathered_sets", block_kernel=None,
                                   score=lambda up, dn, **kw: score_sets(up, dn, weighted=weighted, **kw))  # fmt: skip
    kw = {"space": space.name, "n_features": space.n_features, "tails": ["both", "up", "down"]}
    fused = run_blocks(built_store, method, valid, {"es_tail": "both"}, **kw)
    slow = run_blocks(built_store, gathered, valid, {"es_tail": "both"}, block_size=37, **kw)
    assert fused.keys() == slow.keys()
    for name in fused:
        np.testing.assert_allclose(fused[name], slow[name], atol=1e-6, equal_nan=True)


def test_block_budgets_are_parameters_and_do_not_change_results(built_store, batch):
    _, valid, space = batch
    kw = {"space": space.name, "n_features": space.n_features, "tails": ["both", "up", "down"]}
    whole = run_blocks(built_store, get_method("wtcs"), valid, {"es_tail": "both"}, **kw)
    seen: list[int] = []
    small = run_blocks(built_store, get_method("wtcs"), valid, {"es_tail": "both"}, es_block_bytes=1, tile_min=16,
                       progress=lambda done, total: seen.append(done), **kw)  # fmt: skip
    assert len(seen) > 1 and seen[-1] == built_store.n_signatures
    for name in whole:
        np.testing.assert_array_equal(whole[name], small[name])
    lamb = run_blocks(built_store, get_method("lamb"), valid, {}, **kw)
    tight = run_blocks(built_store, get_method("lamb"), valid, {}, block_bytes=1, block_size=1000, **kw)
    for name in lamb:  # gathered blocks keep >= 256 signatures whatever the budget: same result
        np.testing.assert_array_equal(lamb[name], tight[name])
