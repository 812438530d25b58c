"""One query request: the queries of a run, assembled from every kind of input, and how to run them.

Both interfaces build their runs here, so a query means the same thing wherever it is typed: the
CLI (``opencmap query``) from its options, the REST API from its JSON body. Each is parse →
:func:`build_request` → (optionally :meth:`QueryRequest.validate`, once) → :meth:`QueryRequest.run`
on an :class:`~opencmap.query.engine.Engine` → output.

Inputs, in the order their queries come:

1. ``queries``: :class:`~opencmap.query.genesets.Query` objects given as they are (the API's gene sets);
2. ``up_file`` / ``down_file``: GMT (several queries, paired by name) or GRP (one query, ``name``);
3. ``up`` / ``down``: gene lists (one query, ``name``) or ``{name: genes}`` dicts;
4. ``vectors``: a GCT/GCTX of numeric query profiles (genes x queries);
5. ``sig_ids``: store signatures, as their top/bottom ``n_sig_genes`` genes (gene-set metrics) or
   as their profiles in the run's space (vector metrics);
6. ``de_tables`` then ``rnk_files``: differential-expression tables and pre-ranked lists
   (:mod:`opencmap.query.de`), genes taken among the store's.

Query names must be unique (:class:`~opencmap.errors.QueryError` names the repeats). What
assembling did (a DE table's columns, the genes kept per side) is in :attr:`QueryRequest.notes`;
what the run used is in the result's notes (:meth:`QueryResult.report
<opencmap.query.result.QueryResult.report>`), the same lines for every interface.

Validation happens once: :meth:`QueryRequest.validate` returns a
:class:`~opencmap.query.genesets.ValidatedBatch` that :meth:`QueryRequest.run` hands to the engine
as it is; without one the engine validates the queries itself.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opencmap.errors import GeneSetError
from opencmap.query.genesets import (
    DEFAULT_MAX_GENES,
    DEFAULT_MIN_GENES,
    GeneLookup,
    Query,
    ValidatedBatch,
    check_unique_names,
    restrict_query,
    validate_queries,
    validate_query,
)

if TYPE_CHECKING:
    from opencmap.query.engine import Engine
    from opencmap.query.result import QueryResult
    from opencmap.query.store import Store

__all__ = ["QueryRequest", "build_request"]

PathLike = str | os.PathLike[str]


@dataclass
class QueryRequest:
    """The queries of one run (assembled, see the module docstring) and how to run them.

    ``options`` are the other keyword arguments of :meth:`Engine.run
    <opencmap.query.engine.Engine.run>` (``tau_method``, ``fdr_method``, ``fdr_null_size``,
    ``fdr_seed``, ``require_levels``, method options such as ``es_tail``).
    """

    queries: list[Query]
    metric: str = "wtcs"
    space: str | None = None
    min_genes: int = DEFAULT_MIN_GENES
    max_genes: int = DEFAULT_MAX_GENES
    on_invalid: str = "raise"
    options: dict[str, Any] = field(default_factory=dict)
    #: what assembling the queries did, one readable line each (e.g. a DE table's columns and genes)
    notes: list[str] = field(default_factory=list)

    def validate(self, store: Store, lookup: GeneLookup | None = None) -> ValidatedBatch:
        """Validate every query once against ``store`` (:func:`~opencmap.query.genesets.validate_queries`
        with this request's space, gene bounds, ``on_invalid`` and metric); pass the batch to
        :meth:`run`. ``lookup`` is a :class:`GeneLookup` of the store's genes (built if not given)."""
        space = store.space(self.space)
        return validate_queries(
            self.queries,
            space,
            lookup if lookup is not None else _store_lookup(store),
            metric=self.metric,
            min_genes=self.min_genes,
            max_genes=self.max_genes,
            on_invalid=self.on_invalid,
        )

    def validation_report(self, store: Store, lookup: GeneLookup | None = None) -> dict[str, Any]:
        """Per query (gene sets): valid or not and why, genes kept, unknown (with suggestions),
        out of the space, mapped and ambiguous, and its notes; JSON-ready. Invalid queries are
        reported too (what they would keep), not raised."""
        space = store.space(self.space)
        lookup = lookup if lookup is not None else _store_lookup(store)
        report = []
        for q in self.queries:
            try:
                v = validate_query(q, space, lookup, min_genes=self.min_genes, max_genes=self.max_genes)
                entry: dict[str, Any] = {"name": q.name, "valid": True, "message": None}
            except GeneSetError as exc:
                v = restrict_query(q, space, lookup)  # still report what was kept / unknown
                entry = {"name": q.name, "valid": False, "message": str(exc)}
            entry.update(
                up=list(v.up_genes),
                down=list(v.down_genes),
                unknown=list(v.unknown),
                dropped=list(v.dropped),
                suggestions={k: list(s) for k, s in v.suggestions.items()},
                mapped={side: {t: list(m) for t, m in d.items()} for side, d in v.mapped.items()},
                ambiguous={side: {t: [list(c) for c in cs] for t, cs in d.items()} for side, d in v.ambiguous.items()},
                reasons=dict(v.reasons),
                notes=v.notes(),
            )
            report.append(entry)
        return {"space": space.name, "queries": report}

    def run(
        self,
        engine: Engine,
        *,
        validated: ValidatedBatch | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> QueryResult:
        """Run the request on ``engine`` (:meth:`Engine.run <opencmap.query.engine.Engine.run>`);
        ``validated`` is this request's :meth:`validate` output (not validated again). What
        assembling the queries did (:attr:`notes`, e.g. a DE table's selection) opens the
        result's notes, so ``notes.txt``, ``describe()`` and the API's ``notes`` carry it."""
        result = engine.run(
            validated if validated is not None else self.queries,
            metric=self.metric,
            space=self.space,
            min_genes=self.min_genes,
            max_genes=self.max_genes,
            on_invalid=self.on_invalid,
            progress=progress,
            **self.options,
        )
        result.notes[:0] = [n for n in self.notes if n not in result.notes]
        return result


def build_request(
    store: Store,
    *,
    queries: Sequence[Query] = (),
    up_file: PathLike | None = None,
    down_file: PathLike | None = None,
    up: Iterable[str] | Mapping[str, Iterable[str]] | None = None,
    down: Iterable[str] | Mapping[str, Iterable[str]] | None = None,
    name: str = "query",
    vectors: PathLike | None = None,
    sig_ids: Sequence[str] = (),
    n_sig_genes: int = 50,
    de_tables: Sequence[PathLike] = (),
    rnk_files: Sequence[PathLike] = (),
    de_options: Mapping[str, Any] | None = None,
    metric: str = "wtcs",
    space: str | None = None,
    min_genes: int = DEFAULT_MIN_GENES,
    max_genes: int = DEFAULT_MAX_GENES,
    on_invalid: str = "raise",
    **options: Any,
) -> QueryRequest:
    """Assemble the queries of one run from every input given (see the module docstring).

    ``de_options`` go to :func:`~opencmap.query.de.queries_from_de` (``padj``, ``top``, ``sheet``,
    ``gene_col``, ``lfc_col``, ``padj_col``, ``group_col``). ``options`` are kept for the run
    (:attr:`QueryRequest.options`). A request with no query is returned empty: the caller says
    which of its inputs to give. Raises :class:`~opencmap.errors.QueryError` for repeated names.
    """
    from opencmap.query.genesets import as_queries, queries_from_files, queries_from_gct, signature_queries, vector_queries
    from opencmap.query.methods import get_method

    vector_metric = get_method(metric).kind == "vector"
    out: list[Query] = list(queries)
    notes: list[str] = []
    if up_file is not None or down_file is not None:
        out += queries_from_files(up_file, down_file, name=name)
    if up is not None or down is not None:
        out += as_queries(up, down, name=name)
    if vectors is not None:
        out += queries_from_gct(vectors)
    if sig_ids:
        if vector_metric:
            out += vector_queries(store, list(sig_ids), space=space)
        else:
            out += signature_queries(store, list(sig_ids), n_genes=n_sig_genes)
    if de_tables or rnk_files:
        out += _de_queries(store, de_tables, rnk_files, dict(de_options or {}), space=space, min_genes=min_genes,
                           vector=vector_metric, notes=notes)  # fmt: skip
    check_unique_names(out)
    return QueryRequest(out, metric=metric, space=space, min_genes=min_genes, max_genes=max_genes, on_invalid=on_invalid,
                        options=dict(options), notes=notes)  # fmt: skip


def _de_queries(
    store: Store,
    de_tables: Sequence[PathLike],
    rnk_files: Sequence[PathLike],
    de_options: dict[str, Any],
    *,
    space: str | None,
    min_genes: int,
    vector: bool,
    notes: list[str],
) -> list[Query]:
    """Queries from DE tables / .h5ad / .rnk files, genes taken among the store's; what each
    table gave is appended to ``notes`` (its selection warnings say the same and are not raised)."""
    from opencmap.errors import DESelectionWarning
    from opencmap.query.de import queries_from_de, queries_from_rnk, store_resolver

    resolver = store_resolver(store, space)
    out: list[Query] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DESelectionWarning)  # the same facts are in the notes
        for table in de_tables:
            de = queries_from_de(table, min_genes=min_genes, resolver=resolver, vector=vector, **de_options)
            out += list(de)
            for sel in de.selections:
                notes.append(
                    f"query {sel.name}: from {sel.source}: {sel.columns.describe() if sel.columns else sel.tool}; "
                    f"{len(sel.up)} up, {len(sel.down)} down genes" + (f", {sel.n_vector} vector values" if sel.n_vector else "")
                )
            notes.extend(de.notes)
        for rnk in rnk_files:
            de = queries_from_rnk(rnk, resolver=resolver)
            out += list(de)
            notes.extend(de.notes)
    return out


def _store_lookup(store: Store) -> GeneLookup:
    """The gene lookup of ``store``'s shared reference index (built once per store generation)."""
    from opencmap.query.reference import ReferenceIndex

    return ReferenceIndex.of(store).lookup
