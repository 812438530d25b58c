"""Queries from differential-expression results, scanpy ``rank_genes_groups`` and pre-ranked lists.

:func:`queries_from_de` turns a DE table (DESeq2, edgeR, limma, Seurat, scanpy; a file or a
DataFrame) into up/down queries, one per contrast: rows with a missing gene, fold change or
adjusted p-value are set aside, repeated genes keep their most significant row, rows above the
adjusted p-value threshold are dropped, and the ``top`` genes with the largest positive (up) and
most negative (down) log fold changes are taken (CMap's 10..150 genes per side). With a
``resolver`` (gene token -> store gene id or ``None``; :func:`store_resolver` builds one from a
store), the top genes are taken among those the store knows, so the query keeps ``top`` genes
after restriction. Identifiers are kept as written; the engine maps them again when it validates.

Everything taken and set aside is counted in a :class:`DESelection` per query (``n_missing``,
``n_duplicates``, ``n_above_padj``, ``n_unmapped``, ...) with readable ``notes``; rows set aside
for a reason the user did not ask for (missing values, duplicates, unmapped genes, no adjusted
p-value column) also raise a :class:`~opencmap.errors.DESelectionWarning`.

:func:`queries_from_rank_genes_groups` does the same for an AnnData (or ``.h5ad``) holding
scanpy's ``rank_genes_groups`` (one query per group); :func:`queries_from_rnk` reads a pre-ranked
list as a numeric vector query (for cosine / Spearman / Pearson).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opencmap.errors import DESelectionWarning, FormatError, GeneSetError, ValidationError
from opencmap.query.genesets import DEFAULT_MAX_GENES, DEFAULT_MIN_GENES, Query

__all__ = [
    "DEColumns",
    "DESelection",
    "DEQueries",
    "detect_de_columns",
    "queries_from_de",
    "queries_from_rank_genes_groups",
    "queries_from_rnk",
    "rank_genes_groups_frame",
    "store_resolver",
    "Resolver",
]

Resolver = Callable[[str], "str | None"]

DEFAULT_PADJ = 0.05
DEFAULT_TOP = DEFAULT_MAX_GENES

# recognised column names, lower-cased, in order of preference
GENE_COLUMNS = (
    "gene", "genes", "gene_id", "geneid", "gene_symbol", "symbol", "gene_name", "genename", "names",
    "id", "ensembl_gene_id", "ensembl_id", "ensembl", "entrez_id", "entrezid", "entrez", "feature", "feature_id",
)
LFC_COLUMNS = (
    "log2foldchange", "logfc", "logfoldchanges", "avg_log2fc", "avg_logfc", "log2fc", "log2_fold_change",
    "logfoldchange", "lfc", "log2fold", "log_fc",
)
PADJ_COLUMNS = ("padj", "fdr", "adj.p.val", "pvals_adj", "p_val_adj", "qvalue", "q_value", "qval", "adj_pval", "p.adjust", "fdr_bh", "adj.pval")
PVALUE_COLUMNS = ("pvalue", "p.value", "pval", "pvals", "p_val", "p_value")
GROUP_COLUMNS = ("group", "contrast", "comparison", "cluster", "coef")
_MISSING_TEXT = {"", "na", "nan", "null", "none", "-666", "#n/a", "n/a"}
_SHOW = 10  # genes listed in notes per reason


# ---------------------------------------------------------------------------------- columns
@dataclass(frozen=True)
class DEColumns:
    """The columns a DE table is read by, and the tool that most likely wrote it."""

    gene: str
    lfc: str
    padj: str | None
    pvalue: str | None
    group: str | None
    tool: str

    def describe(self) -> str:
        gene = "row names" if self.gene == "" else repr(self.gene)
        parts = [f"genes {gene}", f"log fold change {self.lfc!r}", f"adjusted p {self.padj!r}" if self.padj else "no adjusted p"]
        if self.group:
            parts.append(f"contrast {self.group!r}")
        return f"{self.tool} table ({', '.join(parts)})"


def _guess_tool(columns: set[str]) -> str:
    lower = {c.lower() for c in columns}
    if {"basemean", "log2foldchange"} <= lower:
        return "DESeq2"
    if {"logfc", "logcpm"} <= lower:
        return "edgeR"
    if {"logfc", "aveexpr"} <= lower:
        return "limma"
    if {"names", "logfoldchanges"} <= lower:
        return "scanpy"
    if "avg_log2fc" in lower or "avg_logfc" in lower:
        return "Seurat"
    return "DE"


def _pick(frame: pd.DataFrame, given: str | None, candidates: Sequence[str], what: str, flag: str, source: str, *, required: bool) -> str | None:
    columns = [str(c) for c in frame.columns]
    shown = ["(row names)" if c == "" else c for c in columns]
    if given is not None:
        if given in columns:
            return given
        lower = {c.lower(): c for c in columns}
        if given.lower() in lower:
            return lower[given.lower()]
        raise ValidationError(f"{source}: no column {given!r} for the {what}; the table's columns are {shown}")
    lower = {c.lower(): c for c in columns}
    for name in candidates:
        if name in lower:
            return lower[name]
    if required:
        raise ValidationError(
            f"{source}: no {what} column recognised among the table's columns {shown}; name it with "
            f"{flag} (recognised names: {', '.join(candidates[:12])})"
        )
    return None


def detect_de_columns(
    frame: pd.DataFrame,
    *,
    gene_col: str | None = None,
    lfc_col: str | None = None,
    padj_col: str | None = None,
    pvalue_col: str | None = None,
    group_col: str | None = None,
    source: str = "DE table",
) -> DEColumns:
    """Find the gene, log fold change, adjusted p-value, p-value and contrast columns of ``frame``.

    Explicit names win (matched exactly, then case-insensitively); otherwise the usual names of
    DESeq2, edgeR, limma, Seurat and scanpy are tried; the gene column falls back to R's row names
    (the unnamed first column). Raises :class:`~opencmap.errors.ValidationError` naming the columns
    found and the option to set when no gene or fold-change column is recognised.
    """
    gene = _pick(frame, gene_col, GENE_COLUMNS, "gene", "gene_col= (CLI --de-gene-col)", source, required=False)
    if gene is None:
        if "" in frame.columns:
            gene = ""
        else:
            _pick(frame, None, GENE_COLUMNS, "gene", "gene_col= (CLI --de-gene-col)", source, required=True)
    lfc = _pick(frame, lfc_col, LFC_COLUMNS, "log fold change", "lfc_col= (CLI --de-lfc-col)", source, required=True)
    padj = _pick(frame, padj_col, PADJ_COLUMNS, "adjusted p-value", "padj_col= (CLI --de-padj-col)", source, required=False)
    pvalue = _pick(frame, pvalue_col, PVALUE_COLUMNS, "p-value", "pvalue_col=", source, required=False)
    group = _pick(frame, group_col, GROUP_COLUMNS, "contrast", "group_col= (CLI --de-group-col)", source, required=False)
    assert gene is not None and lfc is not None
    if len({gene, lfc, padj, group} - {None}) < len([c for c in (gene, lfc, padj, group) if c is not None]):
        raise ValidationError(f"{source}: the gene, fold-change, adjusted p-value and contrast columns must differ "
                              f"(got {gene!r}, {lfc!r}, {padj!r}, {group!r})")
    return DEColumns(gene=gene, lfc=lfc, padj=padj, pvalue=pvalue, group=group, tool=_guess_tool(set(map(str, frame.columns))))


_ENSEMBL_VERSION = re.compile(r"^(ENS[A-Z]*G\d{11})\.\d+$")


def _strip_versions(tokens: np.ndarray, notes: list[str]) -> np.ndarray:
    """Ensembl gene ids with a version suffix (``ENSG00000141510.17``, as tximport/salmon write them)
    lose it: gene tables key Ensembl ids without versions. Noted when any was changed."""
    series = pd.Series(tokens, dtype=object)
    versioned = series.str.match(_ENSEMBL_VERSION).fillna(False).to_numpy(dtype=bool)
    if not versioned.any():
        return tokens
    out = tokens.copy()
    out[versioned] = series[versioned].str.replace(_ENSEMBL_VERSION, r"\1", regex=True).to_numpy(dtype=object)
    notes.append(f"{int(versioned.sum())} Ensembl ids written with a version suffix (e.g. {tokens[versioned][0]}) were read without it")
    return out


def _gene_tokens(series: pd.Series | Sequence[Any]) -> np.ndarray:
    """Gene ids as text (stripped, missing -> ""); integral numbers (Entrez ids from Excel cells or
    numeric columns) without a trailing ``.0``."""
    values = pd.Series(series) if not isinstance(series, pd.Series) else series
    if isinstance(values.dtype, pd.StringDtype) or (values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty")):
        return values.fillna("").astype(str).str.strip().to_numpy(dtype=object)

    def text(v: Any) -> str:
        if v is None or v is pd.NA or (isinstance(v, (float, np.floating)) and not np.isfinite(v)):
            return ""
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return str(int(v))
        return str(v).strip()

    return np.array([text(v) for v in values], dtype=object)


def _numbers(series: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    text = series.map(lambda v: "" if v is None else str(v)).str.strip()
    values = pd.to_numeric(text.where(~text.str.lower().isin(_MISSING_TEXT)), errors="coerce")
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


# ---------------------------------------------------------------------------------- selection
@dataclass(frozen=True)
class DESelection:
    """What was taken from one contrast of a DE table, and why (every count is of table rows).

    ``n_rows`` = ``n_missing`` + ``n_duplicates`` + ``n_above_padj`` + ``n_unmapped`` +
    ``n_zero_lfc`` + ``n_candidates_up`` + ``n_candidates_down``; the query takes the first
    ``top`` candidates per side (``up``, ``down``: identifiers as written in the table). Vector
    queries (pre-ranked lists) set ``n_vector`` to the genes given a value and leave up/down empty.
    """

    name: str
    source: str
    tool: str
    contrast: str | None
    columns: DEColumns | None
    padj_threshold: float | None
    top: int
    n_rows: int
    n_missing: int = 0
    n_duplicates: int = 0
    n_above_padj: int = 0
    n_unmapped: int = 0
    n_zero_lfc: int = 0
    n_candidates_up: int = 0
    n_candidates_down: int = 0
    up: tuple[str, ...] = ()
    down: tuple[str, ...] = ()
    n_vector: int = 0
    duplicates: tuple[str, ...] = ()
    unmapped: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def summary(self) -> dict[str, object]:
        """One flat record (for tables, JSON and AnnData ``obs``)."""
        return {
            "query": self.name,
            "source": self.source,
            "tool": self.tool,
            "contrast": self.contrast or "",
            "columns": self.columns.describe() if self.columns is not None else "",
            "padj_threshold": np.nan if self.padj_threshold is None else self.padj_threshold,
            "top": self.top,
            "n_rows": self.n_rows,
            "n_missing": self.n_missing,
            "n_duplicates": self.n_duplicates,
            "n_above_padj": self.n_above_padj,
            "n_unmapped": self.n_unmapped,
            "n_zero_lfc": self.n_zero_lfc,
            "n_candidates_up": self.n_candidates_up,
            "n_candidates_down": self.n_candidates_down,
            "n_up": len(self.up),
            "n_down": len(self.down),
            "n_vector": self.n_vector,
            "notes": " | ".join(self.notes),
        }


@dataclass
class DEQueries(Sequence[Query]):
    """Queries built from DE results, with what was taken for each (a sequence of :class:`Query`).

    Pass it wherever queries are expected (``Engine.run(de_queries)``); ``selections`` holds one
    :class:`DESelection` per query, ``notes`` every note prefixed by its query.
    """

    queries: list[Query]
    selections: list[DESelection]

    def __len__(self) -> int:
        return len(self.queries)

    def __getitem__(self, i):  # type: ignore[no-untyped-def, override]
        return self.queries[i]

    def __iter__(self) -> Iterator[Query]:
        return iter(self.queries)

    @property
    def notes(self) -> list[str]:
        return [f"query {s.name}: {n}" for s in self.selections for n in s.notes]

    def table(self) -> pd.DataFrame:
        """One row per query: the counts of :class:`DESelection`."""
        return pd.DataFrame([s.summary() for s in self.selections])


def store_resolver(store: Any, space: str | None = None) -> Resolver:
    """A resolver for :func:`queries_from_de`: token -> the store's gene id in ``space``, else None.

    Uses the same lookup as query validation (Entrez ids, symbols, and whatever else the store's
    gene table resolves), so genes it accepts are the genes a query keeps.
    """
    from opencmap.query.genesets import GeneLookup

    lookup = GeneLookup(store.genes)
    sp = store.space(space)

    def resolve(token: str) -> str | None:
        gid = lookup.resolve(token)
        if gid is None or sp.positions([gid])[0] < 0:
            return None
        return gid

    return resolve


def _resolver(resolver: Resolver | None, store: Any, space: str | None) -> Resolver | None:
    if store is None:
        return resolver
    if resolver is not None:
        raise ValidationError("give a resolver or a store, not both")
    return store_resolver(store, space)


def _first_of_each(order: Iterable[int], gene_of: Callable[[int], Any]) -> tuple[list[int], list[int]]:
    """Rows of ``order`` split into the first row of each gene (by ``gene_of``) and the later repeats."""
    taken: set[Any] = set()
    first: list[int] = []
    repeats: list[int] = []
    for i in order:
        gene = gene_of(i)
        (repeats if gene in taken else first).append(i)
        taken.add(gene)
    return first, repeats


def _shown(items: Sequence[str]) -> str:
    return ", ".join(items[:_SHOW]) + (f" and {len(items) - _SHOW} more" if len(items) > _SHOW else "")


def _select(
    frame: pd.DataFrame,
    cols: DEColumns,
    *,
    name: str,
    source: str,
    contrast: str | None,
    padj: float | None,
    top: int,
    min_genes: int,
    resolver: Resolver | None,
) -> tuple[Query, DESelection]:
    n_rows = len(frame)
    notes: list[str] = []
    warn: list[str] = []
    genes = _strip_versions(_gene_tokens(frame[cols.gene]), notes)
    lfc = _numbers(frame[cols.lfc])
    pad = _numbers(frame[cols.padj]) if cols.padj else np.zeros(n_rows)
    pval = _numbers(frame[cols.pvalue]) if cols.pvalue else np.zeros(n_rows)
    gene_missing = pd.Series(genes, dtype=object).str.lower().isin(_MISSING_TEXT).to_numpy(dtype=bool)
    missing = gene_missing | ~np.isfinite(lfc) | np.isnan(pad)
    n_missing = int(missing.sum())
    if n_missing:
        parts = []
        for label, mask in (("a gene id", gene_missing), ("a log fold change", ~np.isfinite(lfc)), ("an adjusted p-value", np.isnan(pad))):
            if mask.any():
                parts.append(f"{int(mask.sum())} without {label}")
        msg = f"{n_missing} rows set aside for missing values ({'; '.join(parts)})"
        if cols.tool == "DESeq2" and np.isnan(pad).any():
            msg += " - DESeq2 leaves padj NA for genes removed by independent filtering or with outlier counts"
        notes.append(msg)
        warn.append(msg)
    keep = np.flatnonzero(~missing)
    # most significant first: padj, then p-value, then |lfc|, then table order
    order = keep[np.lexsort((keep, -np.abs(lfc[keep]), pval[keep], pad[keep]))]
    repeated = pd.Series(genes[order], dtype=object).duplicated().to_numpy(dtype=bool)
    dup_tokens: list[str] = [str(g) for g in genes[order[repeated]]]
    n_dup = len(dup_tokens)
    rows = np.sort(order[~repeated]).astype(np.intp)
    if cols.padj is not None and padj is not None:
        above = pad[rows] > padj
        n_above = int(above.sum())
        rows = rows[~above]
        notes.append(f"{n_above} rows above the adjusted p-value threshold ({cols.padj} > {padj:g}) dropped")
    else:
        n_above = 0
        if cols.padj is None:
            msg = "no adjusted p-value column; genes were ranked by log fold change without a significance filter"
            notes.append(msg)
            warn.append(msg)
    unmapped: list[str] = []
    if resolver is not None and len(rows):
        resolved = {g: resolver(g) for g in dict.fromkeys(genes[rows])}
        mapped = np.array([resolved[g] is not None for g in genes[rows]], dtype=bool)
        unmapped = [str(g) for g in genes[rows][~mapped]]
        rows = rows[mapped]
        # two tokens naming the same store gene: keep the most significant
        by_sig = rows[np.lexsort((rows, -np.abs(lfc[rows]), pval[rows], pad[rows]))]
        kept, same_gene = _first_of_each(by_sig, lambda i: resolved[genes[i]])
        dup_tokens += [f"{genes[i]} (= gene {resolved[genes[i]]})" for i in same_gene]
        n_dup = len(dup_tokens)
        rows = np.array(sorted(kept), dtype=np.intp)
    if dup_tokens:
        msg = f"{n_dup} repeated genes set aside, the most significant row of each kept: {_shown(list(dict.fromkeys(dup_tokens)))}"
        notes.append(msg)
        warn.append(msg)
    if unmapped:
        msg = f"{len(unmapped)} candidate genes (past the filters) are not in the store's feature space and were skipped: {_shown(unmapped)}"
        notes.append(msg)
        warn.append(msg)
    zero = lfc[rows] == 0
    n_zero = int(zero.sum())
    rows = rows[~zero]
    if n_zero:
        notes.append(f"{n_zero} rows with a log fold change of exactly 0 belong to neither side")
    up_rows = rows[lfc[rows] > 0]
    dn_rows = rows[lfc[rows] < 0]
    # largest |lfc| first; ties: most significant, then table order
    up_rows = up_rows[np.lexsort((up_rows, pad[up_rows], -lfc[up_rows]))]
    dn_rows = dn_rows[np.lexsort((dn_rows, pad[dn_rows], lfc[dn_rows]))]
    up = tuple(str(g) for g in genes[up_rows[:top]])
    down = tuple(str(g) for g in genes[dn_rows[:top]])
    where = f"{source}" + (f", contrast {contrast!r}" if contrast is not None else "")
    if not up and not down:
        threshold = f" at {cols.padj} <= {padj:g}" if cols.padj and padj is not None else ""
        raise GeneSetError(
            f"{where}: all {n_rows} genes were filtered out{threshold} ({n_missing} missing values, {n_dup} repeats, "
            f"{n_above} above the threshold, {len(unmapped)} not in the store, {n_zero} with zero fold change); "
            "relax the threshold (padj=, CLI --de-padj) or check the columns (CLI --de-lfc-col/--de-padj-col)"
        )
    for side, picked, available in (("up", up, len(up_rows)), ("down", down, len(dn_rows))):
        if 0 < len(picked) < min_genes:
            raise GeneSetError(
                f"{where}: only {len(picked)} {side} genes pass the filters (need {min_genes}..{top}); relax the "
                "adjusted p-value threshold (padj=, CLI --de-padj) or lower min_genes (CLI --min-genes)"
            )
        if not picked:
            msg = f"no {side} gene passes the filters; the query has {'down' if side == 'up' else 'up'} genes only"
            notes.append(msg)
            warn.append(msg)
        elif available > len(picked):
            notes.append(f"{len(picked)} of {available} {side} candidates taken (the top {top} by log fold change)")
        else:
            notes.append(f"all {available} {side} candidates taken (fewer than the top {top})")
    if warn:
        warnings.warn(f"{where}: " + "; ".join(warn), DESelectionWarning, stacklevel=3)
    selection = DESelection(
        name=name, source=source, tool=cols.tool, contrast=contrast, columns=cols,
        padj_threshold=padj if cols.padj else None, top=top, n_rows=n_rows, n_missing=n_missing, n_duplicates=n_dup,
        n_above_padj=n_above, n_unmapped=len(unmapped), n_zero_lfc=n_zero,
        n_candidates_up=len(up_rows), n_candidates_down=len(dn_rows), up=up, down=down,
        duplicates=tuple(dict.fromkeys(dup_tokens)), unmapped=tuple(unmapped), notes=tuple(notes),
    )
    return Query(name, up=up, down=down), selection


def _check_options(padj: float | None, top: int, min_genes: int) -> None:
    if padj is not None and not 0 < padj <= 1:
        raise ValidationError(f"padj must be in (0, 1] (or None for no filter), got {padj}")
    if not 1 <= min_genes <= top:
        raise ValidationError(f"need 1 <= min_genes <= top, got min_genes={min_genes}, top={top}")


def _contrasts(frame: pd.DataFrame, cols: DEColumns) -> list[tuple[str | None, pd.DataFrame]]:
    if cols.group is None:
        return [(None, frame)]
    keys = pd.Series(_gene_tokens(frame[cols.group]), index=frame.index)
    return [(str(k), frame[keys.to_numpy() == k]) for k in dict.fromkeys(keys)]


def queries_from_de(
    table: pd.DataFrame | str | os.PathLike[str],
    *,
    padj: float | None = DEFAULT_PADJ,
    top: int = DEFAULT_TOP,
    min_genes: int = DEFAULT_MIN_GENES,
    resolver: Resolver | None = None,
    store: Any = None,
    space: str | None = None,
    gene_col: str | None = None,
    lfc_col: str | None = None,
    padj_col: str | None = None,
    pvalue_col: str | None = None,
    group_col: str | None = None,
    name: str | None = None,
    sheet: str | int | None = None,
    vector: bool = False,
) -> DEQueries:
    """Up/down queries (one per contrast) from a differential-expression table.

    Parameters
    ----------
    table:
        A DataFrame or a CSV/TSV/Excel file as DESeq2, edgeR, limma, Seurat or scanpy export it
        (see :func:`opencmap.io.de.read_de_table`); an ``.h5ad`` goes to
        :func:`queries_from_rank_genes_groups`.
    padj:
        Keep rows with adjusted p-value ``<= padj`` (default 0.05; ``None``: no filter).
    top:
        Genes per side: the largest positive / most negative log fold changes (default 150).
    min_genes:
        Fewer genes than this on a side that has some is an error (default 10, as CMap).
    resolver:
        ``token -> store gene id or None``; when given, the top genes are taken among genes it
        maps (see :func:`store_resolver`) and the others are reported as unmapped.
    store, space:
        Instead of ``resolver``: a store (and feature space, default the store's) whose genes the
        top genes are taken among (``store_resolver(store, space)``).
    gene_col, lfc_col, padj_col, pvalue_col, group_col:
        Column names overriding the detection (:func:`detect_de_columns`); ``group_col`` splits
        the table into one query per contrast (scanpy's ``group``, or any contrast column).
    name:
        Query name (default: the file's stem, or ``de``); with several contrasts, queries are
        named by the contrast, prefixed by ``name:`` when ``name`` is given.
    sheet:
        Excel sheet.
    vector:
        Build numeric vector queries (log fold change of every gene with values, for cosine /
        Spearman / Pearson) instead of up/down sets; ``padj`` and ``top`` are then not applied.

    Returns
    -------
    DEQueries
        The queries and one :class:`DESelection` per query. Warns
        (:class:`~opencmap.errors.DESelectionWarning`) when rows were set aside for missing
        values, repeats or genes outside the store.

    Raises
    ------
    ValidationError
        No recognisable gene or fold-change column (names the columns found and the option to set).
    GeneSetError
        Every gene filtered out, or a side with fewer than ``min_genes`` genes.
    """
    _check_options(padj, top, min_genes)
    resolver = _resolver(resolver, store, space)
    if isinstance(table, pd.DataFrame):
        frame, source = table.copy(), "DE table"
        read_notes: list[str] = []
        if not isinstance(frame.index, pd.RangeIndex):
            frame = frame.reset_index(names="")
        frame.columns = [str(c) for c in frame.columns]
        default_name = "de"
    else:
        path = Path(table)
        if path.suffix.lower() == ".h5ad":
            return queries_from_rank_genes_groups(
                path, padj=padj, top=top, min_genes=min_genes, resolver=resolver, name=name, vector=vector
            )
        from opencmap.io.de import read_de_table

        frame, source = read_de_table(path, sheet=sheet), str(path)
        read_notes = [f"decimal commas read as points in columns {frame.attrs['decimal_comma_columns']}"] if frame.attrs.get("decimal_comma_columns") else []
        default_name = path.name.split(".")[0] or "de"
    cols = detect_de_columns(
        frame, gene_col=gene_col, lfc_col=lfc_col, padj_col=padj_col, pvalue_col=pvalue_col, group_col=group_col, source=source
    )
    contrasts = _contrasts(frame, cols)
    several = len(contrasts) > 1
    queries: list[Query] = []
    selections: list[DESelection] = []
    for contrast, part in contrasts:
        if several or (contrast is not None and name is None):
            qname = f"{name}:{contrast}" if name else str(contrast)
        else:
            qname = name or default_name
        if vector:
            query, selection = _vector_query(
                _gene_tokens(part[cols.gene]), _numbers(part[cols.lfc]), name=qname, source=source,
                tool=cols.tool, contrast=contrast, columns=cols, resolver=resolver, what=f"log fold change ({cols.lfc})",
            )
        else:
            query, selection = _select(
                part.reset_index(drop=True), cols, name=qname, source=source, contrast=contrast,
                padj=padj, top=top, min_genes=min_genes, resolver=resolver,
            )
        if read_notes:
            selection = replace(selection, notes=(*read_notes, *selection.notes))
        queries.append(query)
        selections.append(selection)
    return DEQueries(queries, selections)


# ---------------------------------------------------------------------------------- scanpy
def rank_genes_groups_frame(adata: Any, key: str = "rank_genes_groups", *, source: str = "AnnData") -> pd.DataFrame:
    """scanpy's ``adata.uns[key]`` as one long table (``group names scores logfoldchanges pvals pvals_adj``).

    The same layout as ``sc.get.rank_genes_groups_df(adata, group=None)``, built without scanpy.
    Raises :class:`~opencmap.errors.FormatError` when ``adata.uns`` has no such result.
    """
    uns = getattr(adata, "uns", None)
    if uns is None or key not in uns:
        found = sorted(map(str, uns.keys())) if uns is not None else []
        raise FormatError(
            f"{source}: no {key!r} in .uns (found {found[:15]}); run scanpy's sc.tl.rank_genes_groups(adata, groupby=...) "
            "and save the AnnData again, or export sc.get.rank_genes_groups_df(...) as a table"
        )
    rgg = uns[key]
    if "names" not in rgg:
        raise FormatError(f"{source}: .uns[{key!r}] has no 'names' field (fields: {sorted(rgg)}); not a rank_genes_groups result")
    names = rgg["names"]
    groups = list(names.dtype.names) if getattr(names, "dtype", None) is not None and names.dtype.names else []
    if not groups:
        raise FormatError(f"{source}: .uns[{key!r}]['names'] is not a record array of groups; not a rank_genes_groups result")
    fields = [f for f in ("scores", "logfoldchanges", "pvals", "pvals_adj") if f in rgg]
    parts = []
    for g in groups:
        part = pd.DataFrame({"group": g, "names": np.asarray(names[g]).astype(str)})
        for f in fields:
            part[f] = np.asarray(rgg[f][g], dtype=np.float64)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def queries_from_rank_genes_groups(
    adata: Any,
    *,
    key: str = "rank_genes_groups",
    padj: float | None = DEFAULT_PADJ,
    top: int = DEFAULT_TOP,
    min_genes: int = DEFAULT_MIN_GENES,
    resolver: Resolver | None = None,
    store: Any = None,
    space: str | None = None,
    name: str | None = None,
    vector: bool = False,
) -> DEQueries:
    """One query per group of scanpy's ``rank_genes_groups`` in an AnnData or ``.h5ad`` file.

    Same selection as :func:`queries_from_de` (``logfoldchanges``, ``pvals_adj``). Raises
    :class:`~opencmap.errors.FormatError` when there is no ``rank_genes_groups`` result, and
    :class:`~opencmap.errors.ValidationError` when it has no ``logfoldchanges`` (scanpy's
    ``method='logreg'``).
    """
    source = "AnnData"
    if isinstance(adata, (str, os.PathLike)):
        from opencmap.io.h5ad import read_h5ad

        source = str(adata)
        adata = read_h5ad(adata)
    resolver = _resolver(resolver, store, space)
    frame = rank_genes_groups_frame(adata, key, source=source)
    if "logfoldchanges" not in frame.columns:
        raise ValidationError(
            f"{source}: .uns[{key!r}] has no logfoldchanges (scanpy's method='logreg' does not compute them); "
            "rerun rank_genes_groups with method='wilcoxon' or 't-test'"
        )
    _check_options(padj, top, min_genes)
    cols = DEColumns(gene="names", lfc="logfoldchanges", padj="pvals_adj" if "pvals_adj" in frame else None,
                     pvalue="pvals" if "pvals" in frame else None, group="group", tool="scanpy")
    queries, selections = [], []
    for contrast, part in _contrasts(frame, cols):
        qname = f"{name}:{contrast}" if name else str(contrast)
        if vector:
            q, s = _vector_query(part["names"], part["logfoldchanges"].to_numpy(), name=qname, source=source, tool="scanpy",
                                 contrast=contrast, columns=cols, resolver=resolver, what="log fold change (logfoldchanges)")
        else:
            q, s = _select(part.reset_index(drop=True), cols, name=qname, source=source, contrast=contrast, padj=padj,
                           top=top, min_genes=min_genes, resolver=resolver)
        queries.append(q)
        selections.append(s)
    return DEQueries(queries, selections)


# ---------------------------------------------------------------------------------- vectors
def _vector_query(
    genes: pd.Series | Sequence[str],
    values: np.ndarray,
    *,
    name: str,
    source: str,
    tool: str,
    contrast: str | None,
    columns: DEColumns | None,
    resolver: Resolver | None,
    what: str,
) -> tuple[Query, DESelection]:
    notes: list[str] = []
    tokens = _strip_versions(_gene_tokens(genes), notes)
    values = np.asarray(values, dtype=np.float64)
    n_rows = len(tokens)
    warn: list[str] = []
    missing = ~np.isfinite(values) | pd.Series(tokens, dtype=object).str.lower().isin(_MISSING_TEXT).to_numpy(dtype=bool)
    n_missing = int(missing.sum())
    if n_missing:
        msg = f"{n_missing} rows without a gene or a finite {what} set aside"
        notes.append(msg)
        warn.append(msg)
    ids = tokens.copy()
    unmapped: list[str] = []
    if resolver is not None:
        resolved = {t: resolver(t) for t in dict.fromkeys(tokens[~missing])}
        gone = np.array([m or resolved[t] is None for t, m in zip(tokens, missing, strict=True)], dtype=bool)
        unmapped = [str(t) for t in tokens[gone & ~missing]]
        ids = np.array([resolved.get(t) or t for t in tokens], dtype=object)
        missing = gone | missing
    keep = np.flatnonzero(~missing)
    # repeated genes (or tokens naming one gene): keep the largest |value|, then the first
    order = keep[np.lexsort((keep, -np.abs(values[keep])))]
    rows, set_aside = _first_of_each(order, lambda i: ids[i])
    dups = [str(tokens[i]) if ids[i] == tokens[i] else f"{tokens[i]} (= gene {ids[i]})" for i in set_aside]
    rows_arr = np.array(sorted(rows), dtype=np.intp)
    if dups:
        msg = f"{len(dups)} repeated genes set aside, the largest |value| of each kept: {_shown(dups)}"
        notes.append(msg)
        warn.append(msg)
    if unmapped:
        msg = f"{len(unmapped)} genes are not in the store's feature space and were skipped: {_shown(unmapped)}"
        notes.append(msg)
        warn.append(msg)
    if len(rows_arr) < 3:
        raise GeneSetError(f"{source}: only {len(rows_arr)} of {n_rows} genes have a usable value; a vector query needs at least 3")
    notes.append(f"{len(rows_arr)} genes used as a numeric vector ({what})")
    if warn:
        warnings.warn(f"{source}: " + "; ".join(warn), DESelectionWarning, stacklevel=3)
    vec = pd.Series(values[rows_arr], index=pd.Index(ids[rows_arr].astype(str), dtype=object), name=name)
    selection = DESelection(
        name=name, source=source, tool=tool, contrast=contrast, columns=columns, padj_threshold=None, top=0,
        n_rows=n_rows, n_missing=n_missing,
        n_duplicates=len(dups), n_unmapped=len(unmapped), n_vector=len(rows_arr),
        duplicates=tuple(dups), unmapped=tuple(unmapped), notes=tuple(notes),
    )
    return Query(name, vector=vec), selection


def queries_from_rnk(
    path: str | os.PathLike[str],
    *,
    resolver: Resolver | None = None,
    store: Any = None,
    space: str | None = None,
    name: str | None = None,
) -> DEQueries:
    """A numeric vector query from a pre-ranked gene list (``.rnk``: gene, score).

    With a ``resolver`` the genes are mapped to the store's ids (unmapped ones skipped and
    reported); without one the tokens must be the store's gene ids. Repeated genes keep their
    largest |score| (reported). For cosine / Pearson / Spearman.
    """
    from opencmap.io.de import read_rnk

    resolver = _resolver(resolver, store, space)
    series = read_rnk(path)
    qname = name or str(series.name or "rnk")
    q, s = _vector_query(list(series.index), series.to_numpy(), name=qname, source=str(path), tool="rnk",
                         contrast=None, columns=None, resolver=resolver, what="score")
    return DEQueries([q], [s])

