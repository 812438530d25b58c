"""Query genes resolved through the gene identity table against a store (issue 12 item 4)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opencmap.core.gct import GCT
from opencmap.datasets import gene_table
from opencmap.errors import AmbiguousGeneWarning, GeneMappingWarning, GeneSetError, UnknownGeneWarning
from opencmap.io.gene_identity import bundled_gene_identity
from opencmap.query.engine import Engine, run_query
from opencmap.query.genesets import GeneLookup, Query, validate_query
from opencmap.query.store import FeatureSpace

IDENTITY = bundled_gene_identity()
DEMO_GENES = gene_table()  # the synthetic compendium's genes: 2017 LINCS symbols
DEMO_LOOKUP = GeneLookup(DEMO_GENES)
DEMO_SPACE = FeatureSpace("aig", pd.Index(DEMO_GENES["pr_gene_id"].astype(str), dtype=object))


def _ids(symbols):
    return [DEMO_LOOKUP.resolve(s) for s in symbols]


def test_current_symbols_resolve_on_the_demo_store_genes():
    # the demo store names these AARS / GARS / NARS (2017); current HGNC symbols must work
    for token, entrez, store_symbol in (("AARS1", "16", "AARS"), ("GARS1", "2617", "GARS"), ("NARS1", "4677", "NARS")):
        m = DEMO_LOOKUP.map(token)
        assert (m.gene_id, m.symbol, m.via) == (entrez, token, "symbol"), m.describe()
        assert DEMO_LOOKUP.symbol_of[entrez] == store_symbol
        m = DEMO_LOOKUP.map(store_symbol)  # the store's own name still works
        assert (m.gene_id, m.symbol, m.via) == (entrez, token, "store symbol"), m.describe()
    assert DEMO_LOOKUP.map("aars1").case_changed
    assert DEMO_LOOKUP.map("ENSG00000090861.15").gene_id == "16"


def test_mapped_genes_are_reported_per_side_with_warnings():
    up = ["AARS1", "GARS", "ENSG00000133703", "sept7", *DEMO_GENES["pr_gene_id"][100:110]]
    down = list(DEMO_GENES["pr_gene_id"][200:212])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        v = validate_query(Query("q", up=tuple(up), down=tuple(down)), DEMO_SPACE, DEMO_LOOKUP, warn=True)
    assert v.up_genes[:4] == ("16", "2617", "3845", "989")
    assert v.mapped["up"]["ENSG00000133703"] == ("3845", "KRAS", "ensembl")
    assert v.mapped["up"]["sept7"] == ("989", "SEPTIN7", "store symbol, case changed")
    assert v.mapped["up"]["AARS1"] == ("16", "AARS1", "symbol")
    assert v.mapped["down"] == {}
    assert set(v.noteworthy_mappings("up")) == {"ENSG00000133703", "sept7"}
    mapping = [w for w in caught if issubclass(w.category, GeneMappingWarning)]
    assert len(mapping) == 1 and "ENSG00000133703 -> 3845 KRAS (ensembl)" in str(mapping[0].message)
    assert "ensembl" in v.summary()["mapped"]
    assert any("mapped" in n for n in v.notes())


def test_ambiguous_alias_refused_with_its_candidates():
    alias = "PARP"  # NCBI alias of PARP1 (142) and COL11A2 (1302), a previous symbol of neither
    assert {e for e, _ in IDENTITY.resolve(alias).candidates} >= {"142", "1302"}
    up = [alias, *DEMO_GENES["pr_gene_id"][100:110]]
    with pytest.warns(AmbiguousGeneWarning, match=r"PARP = PARP1 \(142\) or COL11A2 \(1302\)"):
        v = validate_query(Query("q", up=tuple(up)), DEMO_SPACE, DEMO_LOOKUP, warn=True)
    assert "142" not in v.up_genes and "1302" not in v.up_genes
    assert v.ambiguous["up"][alias] == IDENTITY.resolve(alias).candidates
    assert set(v.suggestions[alias]) >= {"PARP1", "COL11A2"}  # the candidates in the store, for the user to pick
    assert "PARP" in v.summary()["ambiguous"]


@pytest.mark.parametrize("token, other", [("KRAS", "NRAS"), ("HDAC1", "VDAC1"), ("BUB1", "BUB1B"), ("GARS1", "RS1")])
def test_a_missing_gene_never_gets_a_different_gene_suggested(token, other):
    entrez = IDENTITY.resolve(token).entrez_id
    other_id = IDENTITY.resolve(other).entrez_id
    genes = pd.DataFrame(
        {"pr_gene_id": [other_id, "5290", "7157"], "pr_gene_symbol": [IDENTITY.get(other_id).symbol, "PIK3CA", "TP53"]}
    )
    lookup = GeneLookup(genes)
    assert entrez not in set(genes["pr_gene_id"])
    for variant in (token, token.lower(), token + "X", token[:-1], f"{token}-1"):
        m = lookup.map(variant)
        assert m.gene_id != other_id, variant
        assert other not in lookup.suggest(variant), variant
    m = lookup.map(token)
    assert m.status == "unknown" and "not measured in this store" in m.note


def test_a_store_with_non_entrez_ids_keeps_its_own_table(built_store):
    # the synthetic engine store uses ids 1000.. with symbols GENE0..; Entrez 1000 is CDH2
    lookup = GeneLookup(built_store.genes)
    assert lookup.resolve("GENE0") == "1000" and lookup.map("1000").symbol == "GENE0"
    m = lookup.map("CDH2")
    assert m.gene_id is None and "not Entrez ids" in m.note


def test_run_query_reports_unused_genes_in_notes_and_warnings(built_store, level5):
    _, _, programs = level5
    up = programs["A_up"][:20] + ["NOPE1", "NOPE2", "CDH2"]
    down = programs["A_dn"][:20]
    with pytest.warns(UnknownGeneWarning, match="3 unknown"):
        res = run_query(built_store, up=up, down=down, name="qa", tau=False)
    notes = " | ".join(res.notes)
    assert "query qa: 3 gene(s) not used (40 used)" in notes and "NOPE1" in notes and "CDH2" in notes
    assert res.queries[0].unknown == ("NOPE1", "NOPE2", "CDH2")


def test_every_gene_unknown_is_one_clear_error():
    with pytest.raises(GeneSetError) as info:
        validate_query(Query("myquery", up=("NOPE1", "NOPE2", "NOPE3"), down=("NOPE4",)), DEMO_SPACE, DEMO_LOOKUP)
    msg = str(info.value)
    assert "\n" not in msg and "'myquery'" in msg and "all 4 genes are unknown" in msg and "NOPE1" in msg


def test_a_gene_on_both_sides_by_different_names_is_refused():
    up = ["AARS", *DEMO_GENES["pr_gene_id"][100:110]]
    down = ["AARS1", *DEMO_GENES["pr_gene_id"][200:210]]
    with pytest.raises(GeneSetError, match=r"in both the up and down sets: 16 \(up: AARS, down: AARS1\)"):
        validate_query(Query("q", up=tuple(up), down=tuple(down)), DEMO_SPACE, DEMO_LOOKUP)


def test_the_same_gene_twice_on_one_side_is_counted_once_and_said():
    up = ["AARS", "16", "AARS1", *DEMO_GENES["pr_gene_id"][100:110]]
    v = validate_query(Query("q", up=tuple(up)), DEMO_SPACE, DEMO_LOOKUP)
    assert v.up_genes.count("16") == 1
    assert "same gene as AARS" in v.reasons["16"] and "same gene as AARS" in v.reasons["AARS1"]


# ---------------------------------------------------------------------------------- property
def _eligible() -> pd.DataFrame:
    """L1000 landmark genes with a previous symbol and an Ensembl id that resolve to them alone."""
    rows = []
    for gid in DEMO_GENES["pr_gene_id"][:978]:
        rec = IDENTITY.get(gid)
        prev = [p for p in rec.previous_symbols if IDENTITY.resolve(p).entrez_id == gid]
        ens = [e for e in rec.ensembl_ids if IDENTITY.resolve(e).entrez_id == gid]
        if prev and ens and IDENTITY.resolve(rec.symbol).entrez_id == gid:
            rows.append({"gene": gid, "symbol": rec.symbol, "previous": prev[0], "ensembl": ens[0]})
    return pd.DataFrame(rows)


ELIGIBLE = _eligible()


@pytest.fixture(scope="module")
def real_gene_store(tmp_path_factory):
    """A 978-landmark store with the demo store's 2017 symbols and 24 random signatures."""
    from opencmap.query.store import build_store

    genes = DEMO_GENES.iloc[:978].set_index("pr_gene_id")
    rng = np.random.default_rng(7)
    data = rng.normal(size=(978, 24)).astype(np.float32)
    sig_ids = [f"SIG{i}" for i in range(24)]
    info = pd.DataFrame({"sig_id": sig_ids, "pert_id": [f"P{i % 6}" for i in range(24)], "pert_type": "trt_cp", "cell_id": "A375"})
    gct = GCT(data, rids=list(genes.index), cids=sig_ids, row_meta=genes[["pr_gene_symbol", "pr_is_lm", "pr_is_bing"]], col_meta=info.set_index("sig_id"))
    return Engine(build_store(tmp_path_factory.mktemp("realgenes") / "store", gct, sig_info=info))


WRITINGS = ("entrez", "symbol", "previous", "ensembl", "lower")


def _write(row: pd.Series, how: str, version: int) -> str:
    if how == "entrez":
        return row["gene"]
    if how == "symbol":
        return row["symbol"]
    if how == "previous":
        return row["previous"]
    if how == "ensembl":
        return f"{row['ensembl']}.{version}" if version else row["ensembl"]
    return row["symbol"].lower()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    picks=st.lists(st.integers(0, len(ELIGIBLE) - 1), min_size=20, max_size=30, unique=True),
    hows=st.lists(st.sampled_from(WRITINGS), min_size=30, max_size=30),
    version=st.integers(0, 20),
)
def test_query_scores_do_not_depend_on_how_genes_are_written(real_gene_store, picks, hows, version):
    half = len(picks) // 2
    rows = [ELIGIBLE.iloc[i] for i in picks]
    ref = Query("q", up=tuple(r["gene"] for r in rows[:half]), down=tuple(r["gene"] for r in rows[half:]))
    written = [_write(r, h, version) for r, h in zip(rows, hows, strict=False)]
    alt = Query("q", up=tuple(written[:half]), down=tuple(written[half:]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeneMappingWarning)
        a = real_gene_store.run(ref, ncs=False, fdr=False, tau=False, summaries=False)
        b = real_gene_store.run(alt, ncs=False, fdr=False, tau=False, summaries=False)
    assert b.queries[0].up_genes == a.queries[0].up_genes and b.queries[0].down_genes == a.queries[0].down_genes
    assert not b.queries[0].unknown and not b.queries[0].ambiguous["up"] and not b.queries[0].ambiguous["down"]
    np.testing.assert_array_equal(a.levels["sig"].metrics["wtcs"], b.levels["sig"].metrics["wtcs"])


def test_mappings_survive_the_stored_result(real_gene_store):
    from opencmap.query.result import QueryResult

    up = ["AARS1", "ENSG00000143799.9", "PARP", *ELIGIBLE["gene"][10:20]]
    down = list(ELIGIBLE["gene"][30:42])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = real_gene_store.run(Query("q", up=tuple(up), down=tuple(down)), ncs=False, fdr=False, tau=False, summaries=False)
    q = res.queries[0]
    assert q.mapped["up"]["ENSG00000143799.9"] == ("142", "PARP1", "ensembl")
    assert "PARP" in q.ambiguous["up"]
    described = res.describe()["queries"][0]
    assert described["mapped"]["up"]["AARS1"] == ["16", "AARS1", "symbol"]
    back = QueryResult.from_bytes(res.to_bytes()).queries[0]
    assert back.mapped == q.mapped and back.ambiguous == q.ambiguous and back.reasons == q.reasons
    assert any("mapped" in n for n in res.notes) and any("ambiguous" in n for n in res.notes)


def test_vector_queries_read_symbols_and_ensembl_ids_too():
    rng = np.random.default_rng(3)
    genes = list(DEMO_GENES["pr_gene_id"][:40])
    values = rng.normal(size=40)
    by_id = validate_query(Query("v", vector=pd.Series(values, index=genes)), DEMO_SPACE, DEMO_LOOKUP)
    written = ["AARS1", "ENSG00000204574.2", *genes[2:40], "PARP", "NOPE"]  # 16 -> AARS1, 23 (ABCF1) -> Ensembl
    with pytest.warns(GeneMappingWarning, match="ENSG00000204574.2 -> 23 ABCF1"):
        v = validate_query(Query("v", vector=pd.Series([*values, 5.0, 6.0], index=written)), DEMO_SPACE, DEMO_LOOKUP, warn=True)
    np.testing.assert_array_equal(v.vector, by_id.vector)
    assert v.mapped["vector"]["ENSG00000204574.2"] == ("23", "ABCF1", "ensembl")
    assert "PARP" in v.ambiguous["vector"] and v.unknown == ("NOPE",)
    assert any("1 gene(s) not used (40 used)" in n for n in v.notes())
