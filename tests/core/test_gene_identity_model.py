"""Gene identity resolution (issue 12 item 4): rules on a small hand-made table, then the bundled one."""

from __future__ import annotations

import pytest

from opencmap.core.gene_identity import GeneIdentity, GeneRecord, normalised_key
from opencmap.errors import ValidationError
from opencmap.io.gene_identity import bundled_gene_identity

SMALL = GeneIdentity(
    [
        GeneRecord("16", "AARS1", previous_symbols=("AARS",), aliases=("CMT2N",), ensembl_ids=("ENSG00000090861",), lincs_symbol="AARS"),
        GeneRecord("2617", "GARS1", previous_symbols=("GARS",), aliases=("CMT2D",)),
        GeneRecord("2618", "GART", aliases=("GARS", "AIRS", "PGFT")),
        GeneRecord("5891", "MOK", previous_symbols=("RAGE",)),
        GeneRecord("177", "AGER", aliases=("RAGE", "SCARJ1")),
        GeneRecord("4893", "NRAS", aliases=("KRAS", "N-ras")),
        GeneRecord("3845", "KRAS", aliases=("K-RAS", "KRAS2"), ensembl_ids=("ENSG00000133703",)),
        GeneRecord("989", "SEPTIN7", previous_symbols=("SEPT7", "CDC10")),
        GeneRecord("100", "ONE", aliases=("SHARED",)),
        GeneRecord("101", "TWO", aliases=("SHARED",), ensembl_ids=("ENSG00000000001", "ENSG00000000002")),
        GeneRecord("102", "THREE", ensembl_ids=("ENSG00000000002",)),
        GeneRecord("9142", "CXORF1", lincs_symbol="CXORF1", ncbi_current=False),
        GeneRecord("84631", "SLITRK2", previous_symbols=("CXorf1",)),
    ],
    version="test",
)


@pytest.mark.parametrize(
    "token, entrez, via, case_changed",
    [
        ("16", "16", "entrez", False),
        ("ENSG00000090861", "16", "ensembl", False),
        ("ensg00000090861.7", "16", "ensembl", True),
        ("AARS1", "16", "symbol", False),
        ("aars1", "16", "symbol", True),
        (" AARS1 ", "16", "symbol", False),
        ("AARS", "16", "previous symbol", False),
        ("CMT2N", "16", "alias", False),
        ("GARS", "2617", "previous symbol", False),  # a previous symbol beats another gene's alias
        ("KRAS", "3845", "symbol", False),  # a current symbol beats another gene's alias
        ("Sept7", "989", "previous symbol", True),
    ],
)
def test_rules(token, entrez, via, case_changed):
    m = SMALL.resolve(token)
    assert (m.status, m.entrez_id, m.via, m.case_changed) == ("resolved", entrez, via, case_changed), m.describe()


def test_every_mapping_says_what_else_the_name_means():
    assert "alias of GART (Entrez 2618)" in SMALL.resolve("GARS").note
    assert "current symbol wins" in SMALL.resolve("KRAS").note and "NRAS" in SMALL.resolve("KRAS").note
    assert SMALL.resolve("ENSG00000090861.7").note == "version suffix .7 ignored"


def test_shared_alias_is_ambiguous_with_its_candidates():
    m = SMALL.resolve("SHARED")
    assert m.status == "ambiguous" and m.entrez_id is None
    assert m.candidates == (("100", "ONE"), ("101", "TWO"))
    m = SMALL.resolve("ENSG00000000002")  # an Ensembl id of two genes
    assert m.status == "ambiguous" and {e for e, _ in m.candidates} == {"101", "102"}


def test_withdrawn_id_keeps_its_entrez_but_not_its_symbol():
    assert SMALL.resolve("9142").entrez_id == "9142"
    m = SMALL.resolve("CXORF1")  # old symbol of a withdrawn id and a previous symbol of SLITRK2
    assert m.status == "ambiguous" and {e for e, _ in m.candidates} == {"9142", "84631"}


def test_unknown_tokens():
    for token in ("", "  ", "NOTAGENE", "999999", "ENSG99999999999"):
        assert SMALL.resolve(token).status == "unknown"


def test_suggestions_only_from_the_table():
    assert SMALL.suggest("K_RAS") == ("KRAS",)  # punctuation variant of one gene's name
    assert SMALL.suggest("7-Sep") == ("SEPTIN7",)  # a spreadsheet date
    for token in ("KRAZ", "KRAS1", "NRAS2", "GARS2", "AARS11", "SHARED"):
        assert SMALL.suggest(token) == (), token
    assert SMALL.suggest("KRAS") == ()  # resolves: nothing to suggest
    assert normalised_key(" hla-drb 1 ") == "HLADRB1"


def test_duplicate_ids_refused():
    with pytest.raises(ValidationError, match="appears twice"):
        GeneIdentity([GeneRecord("1", "A"), GeneRecord("1", "B")])


# ---------------------------------------------------------------------------------- bundled table
@pytest.fixture(scope="module")
def bundled():
    return bundled_gene_identity()


def test_bundled_table_covers_the_l1000_genes(bundled):
    from opencmap.datasets import gene_table

    genes = gene_table()
    assert bundled.version == "1"
    for gid, sym, lm, bing in zip(genes["pr_gene_id"], genes["pr_gene_symbol"], genes["pr_is_lm"], genes["pr_is_bing"], strict=True):
        rec = bundled.get(gid)
        assert rec is not None and rec.lincs_symbol == sym, gid
        assert rec.space == ("lm" if lm else "bing" if bing else "aig")
    assert sum(1 for r in bundled.records if r.space) == 12328
    assert sum(1 for r in bundled.records if r.space == "lm") == 978


def test_every_previous_symbol_resolves_to_its_gene(bundled):
    """Each previous symbol of an L1000 gene resolves to that gene, except where the rules say
    otherwise, and then the answer names the gene: another gene's current symbol (current wins,
    the note names this gene) or a previous symbol of several genes (ambiguous, this gene among
    the candidates)."""
    counts = {"own": 0, "current symbol of another gene": 0, "ambiguous": 0}
    for rec in bundled.records:
        if not rec.space:
            continue
        for prev in rec.previous_symbols:
            m = bundled.resolve(prev)
            if m.resolved and m.entrez_id == rec.entrez_id:
                assert m.via == "previous symbol" or not rec.ncbi_current
                counts["own"] += 1
            elif m.resolved:
                assert m.via == "symbol" and f"Entrez {rec.entrez_id})" in m.note, m.describe()
                counts["current symbol of another gene"] += 1
            else:
                assert m.status == "ambiguous" and rec.entrez_id in {e for e, _ in m.candidates}, m.describe()
                counts["ambiguous"] += 1
    assert counts["own"] > 5000 and counts["own"] > 20 * (counts["ambiguous"] + counts["current symbol of another gene"]), counts


def test_every_ensembl_id_resolves_to_its_gene_or_names_it(bundled):
    for rec in bundled.records:
        for ens in rec.ensembl_ids:
            m = bundled.resolve(f"{ens}.3")
            assert m.entrez_id == rec.entrez_id or rec.entrez_id in {e for e, _ in m.candidates}, m.describe()


@pytest.mark.parametrize(
    "token, entrez, via",
    [("AARS1", "16", "symbol"), ("GARS1", "2617", "symbol"), ("NARS1", "4677", "symbol"), ("AARS", "16", "previous symbol"),
     ("NARS", "4677", "previous symbol"), ("SEPT7", "989", "previous symbol"), ("ENSG00000133703", "3845", "ensembl")],
)
def test_bundled_known_renames(bundled, token, entrez, via):
    m = bundled.resolve(token)
    assert (m.entrez_id, m.via) == (entrez, via), m.describe()


def test_bundled_current_symbol_wins_over_an_old_name(bundled):
    # Entrez 51691 was NAA38 in the 2017 LINCS table; NAA38 is now the symbol of Entrez 84316
    assert "NAA38" in bundled.get("51691").previous_symbols
    m = bundled.resolve("NAA38")
    assert (m.entrez_id, m.via) == ("84316", "symbol") and "LSM8 (Entrez 51691)" in m.note


@pytest.mark.parametrize("token, other", [("KRAS", "NRAS"), ("HDAC1", "VDAC1"), ("BUB1", "BUB1B"), ("GARS1", "RS1")])
def test_bundled_never_suggests_a_different_gene(bundled, token, other):
    assert bundled.resolve(token).symbol == token
    for variant in (token + "X", token[:-1], token.lower() + "1", token + "-2"):
        assert other not in bundled.suggest(variant), variant
