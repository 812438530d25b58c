"""The query-request builder (:mod:`opencmap.query.request`): one way to assemble, validate once, and run."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from opencmap.errors import ConfigError, GeneSetError, QueryError, UnknownGeneWarning
from opencmap.query.engine import Engine
from opencmap.query.genesets import Query, ValidatedBatch, validate_queries
from opencmap.query.request import QueryRequest, build_request

FAST = {"fdr": False, "tau": False}


@pytest.fixture(scope="module")
def engine(built_store, pcl):
    return Engine(built_store, pcl=pcl)


def test_inputs_are_assembled_in_one_order(engine, level5, tmp_path):
    from opencmap.io import write_grp

    _, _, prog = level5
    write_grp(prog["B_up"][:15], tmp_path / "up.grp")
    write_grp(prog["B_dn"][:15], tmp_path / "dn.grp")
    sig = engine.store.sig_ids[3]
    req = build_request(
        engine.store,
        queries=[Query("given", up=tuple(prog["A_up"][:12]))],
        up_file=tmp_path / "up.grp",
        down_file=tmp_path / "dn.grp",
        name="from_files",
        up={"from_lists": prog["A_dn"][:12]},
        sig_ids=[sig],
        n_sig_genes=20,
        tau_method="cmap",
    )
    assert isinstance(req, QueryRequest) and req.options == {"tau_method": "cmap"} and req.notes == []
    assert [q.name for q in req.queries] == ["given", "from_files", "from_lists", sig]
    assert req.queries[1].up == tuple(prog["B_up"][:15]) and req.queries[2].up == tuple(prog["A_dn"][:12])
    assert len(req.queries[-1].up) == len(req.queries[-1].down) == 20


def test_repeated_names_are_refused_and_no_input_is_an_empty_request(engine, level5):
    _, _, prog = level5
    with pytest.raises(QueryError, match=r"query names must be unique; repeated: \['A'\]"):
        build_request(engine.store, queries=[Query("A", up=("1",))], up=prog["A_up"][:12], name="A")
    assert build_request(engine.store).queries == []


def test_vector_metrics_take_signatures_as_profiles(engine):
    sig = engine.store.sig_ids[4]
    req = build_request(engine.store, sig_ids=[sig], metric="cosine")
    assert req.queries[0].is_vector
    result = req.run(engine)
    assert result.top(1)["sig_id"].iloc[0] == sig


def test_validated_once_runs_to_the_same_result(engine, level5):
    _, _, prog = level5
    up = {"A": prog["A_up"][:20] + ["NOT_A_GENE"], "B": prog["B_up"][:20]}
    down = {"A": prog["A_dn"][:20], "B": prog["B_dn"][:20]}
    req = build_request(engine.store, up=up, down=down, **FAST)
    batch = req.validate(engine.store)
    assert isinstance(batch, ValidatedBatch) and [v.name for v in batch.queries] == ["A", "B"]
    assert batch.space == engine.store.space().name and any("NOT_A_GENE" in n for n in batch.notes)
    with pytest.warns(UnknownGeneWarning, match="NOT_A_GENE"):  # the run still warns what validation found
        once = req.run(engine, validated=batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = engine.run([Query(n, up=tuple(up[n]), down=tuple(down[n])) for n in up], **FAST)
    assert once.notes == direct.notes and once.describe() == direct.describe()
    for name, values in direct.level("sig").metrics.items():
        np.testing.assert_array_equal(once.level("sig").metrics[name], values, err_msg=name)


def test_a_batch_runs_only_with_the_settings_it_was_validated_for(engine, level5):
    _, _, prog = level5
    req = build_request(engine.store, up=prog["A_up"][:20], down=prog["A_dn"][:20], name="A", **FAST)
    batch = req.validate(engine.store)
    with pytest.raises(ConfigError, match="validated for space"):
        engine.run(batch, min_genes=5, **FAST)
    with pytest.raises(ConfigError, match="validated for space"):
        engine.run(batch, metric="cosine", **FAST)


def test_skip_leaves_invalid_queries_out_with_a_note_and_raise_raises(engine, level5):
    _, _, prog = level5
    queries = [Query("good", up=tuple(prog["A_up"][:20])), Query("bad", up=("NOT_A_GENE",))]
    space = engine.store.space()
    with pytest.raises(GeneSetError, match="bad"):
        validate_queries(queries, space, engine.store.genes)
    batch = validate_queries(queries, space, engine.store.genes, on_invalid="skip")
    assert [v.name for v in batch.queries] == ["good"]
    assert any(n.startswith("query bad skipped:") for n in batch.notes)
    empty = validate_queries(queries[1:], space, engine.store.genes, on_invalid="skip")
    with pytest.raises(QueryError, match="no valid query left"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine.run(empty, on_invalid="skip", **FAST)
    with pytest.raises(QueryError, match="needs a numeric vector"):
        validate_queries(queries, space, engine.store.genes, metric="cosine")
