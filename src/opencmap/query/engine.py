"""The query engine: validate queries, score every store signature, then NCS, FDR, tau, summaries.

One runner for every method (:mod:`opencmap.query.methods`): it reads from the store only the
rows a batch of queries needs (the union of their genes, gene-major, in blocks of signatures so
memory stays bounded), hands each query its rows, and applies the shared post-processing once::

    engine = Engine(store)                       # or run_query(store, up=..., down=...)
    result = engine.run(queries, metric="wtcs")  # -> QueryResult
    result.top(n=20, level="pert_summary")

Post-processing for connectivity methods (WTCS, CS): NCS per cell line x perturbagen type
(§6.4), FDR q-values against null signatures (§6.5), tau against the store's backgrounds (§6.6),
maxq summaries per perturbagen x cell, perturbagen and PCL, each with its level's tau (§6.7-6.8).

Each gene-set query is scored on its tail (cmapM ``es_tail``): ``both`` (WTCS) when it has up
and down genes, ``up`` (ES_up) or ``down`` (-ES_dn) when it has one side, or the tail forced by
``es_tail``. Its tau is read only from a background built from queries of the same tail and
metric; without one, tau stays NaN for that query with a note. Undefined scores (NaN, e.g. all
set weights 0) stay NaN through NCS, FDR, tau and summaries. ``result.provenance`` records per
query the tail and the tau background used (kind, size, match, staleness).

Everything that depends only on the store is computed once per engine and reused by every query:
NCS groups, the reference rows in group order, null flags, the summary levels' group index arrays,
and each level's background rows (read in place from the memory-mapped store when aligned). The
post-processing kernels are compiled and handle all query columns of a batch in one call.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from opencmap.core.gct import GCT
from opencmap.errors import (
    BackgroundMismatchWarning,
    ConfigError,
    OneSidedQueryWarning,
    QueryError,
    TauUnavailableWarning,
    UndefinedScoreWarning,
)
from opencmap.query.genesets import (
    DEFAULT_MAX_GENES,
    DEFAULT_MIN_GENES,
    GeneLookup,
    Query,
    ValidatedBatch,
    ValidatedQuery,
    as_queries,
    check_unique_names,
    signature_queries,
    validate_queries,
)
from opencmap.query.methods import Method, SetBlock, get_method
from opencmap.query.result import LevelResult, QueryResult
from opencmap.query.store import Store
from opencmap.query.summaries import SummaryPlan

__all__ = ["Engine", "run_query", "connectivity_matrix", "ncs_groups", "null_mask", "reference_mask"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

# bytes of gathered rows per block of signatures (ranks uint16 + scores float32)
_BLOCK_BYTES = 48 << 20
# gene-set methods scored by the fused ES kernel straight from the store -> weighted?
_FUSED_ES = {"wtcs": True, "cs": False}
# bytes of per-block ES + leading-edge outputs (float64, every set) in the fused path
_ES_BLOCK_BYTES = 32 << 20
_TILE_MIN = 1024


# ---------------------------------------------------------------------------------- signature roles
def _column(info: pd.DataFrame, *names: str) -> pd.Series | None:
    for n in names:
        if n in info.columns:
            return info[n]
    return None


def _flag(series: pd.Series) -> np.ndarray:
    values = pd.to_numeric(series.astype(object), errors="coerce").fillna(0).to_numpy()
    return values.astype(float) == 1


def ncs_groups(sig_info: pd.DataFrame) -> tuple[np.ndarray, pd.Index]:
    """GUTC NCS groups: ``pert_type x cell_id`` with ``trt_poscon``/``ctl_vehicle`` -> ``trt_cp``.

    Returns int codes (S,) and the group labels. Missing columns form one group.
    """
    ptype = _column(sig_info, "pert_type")
    cell = _column(sig_info, "cell_id", "cell_iname")
    n = len(sig_info)
    pt = np.full(n, "", dtype=object) if ptype is None else ptype.astype(str).replace({"trt_poscon": "trt_cp", "ctl_vehicle": "trt_cp"}).to_numpy(dtype=object)
    ce = np.full(n, "", dtype=object) if cell is None else cell.astype(str).to_numpy(dtype=object)
    labels = pd.Index(pd.Series(pt) + ":" + pd.Series(ce), dtype=object)
    codes, uniques = pd.factorize(labels)
    return codes.astype(np.int64), pd.Index(uniques, dtype=object)


def reference_mask(sig_info: pd.DataFrame) -> np.ndarray:
    """NCS reference signatures: ``is_ncs_sig`` or ``is_touchstone`` if present, else all."""
    col = _column(sig_info, "is_ncs_sig", "is_touchstone")
    if col is None:
        return np.ones(len(sig_info), dtype=bool)
    mask = _flag(col)
    return mask if mask.any() else np.ones(len(sig_info), dtype=bool)


def null_mask(sig_info: pd.DataFrame) -> np.ndarray:
    """Null signatures for FDR: ``is_null_sig`` if present, else control pert types (``ctl_*``)."""
    col = _column(sig_info, "is_null_sig")
    if col is not None:
        return _flag(col)
    ptype = _column(sig_info, "pert_type")
    if ptype is None:
        return np.zeros(len(sig_info), dtype=bool)
    return ptype.astype(str).str.startswith("ctl_").to_numpy(dtype=bool)


# ---------------------------------------------------------------------------------- engine
class Engine:
    """Runs queries against one :class:`~opencmap.query.store.Store` (open once, query many times).

    Parameters
    ----------
    store:
        An open store or its path.
    pcl:
        Perturbagen classes for PCL summaries: a GMT path or ``{name: [pert_id, ...]}``; default:
        the classes stored with the store at build time (:attr:`Store.pcl`), if any. Checked
        against the store's perturbagens (:func:`opencmap.query.pcl.load_pcls`): none known raises
        :class:`~opencmap.errors.PCLError`; members or classes left out are in :attr:`pcl_notes`
        (warned as :class:`~opencmap.errors.PCLWarning`) and in every result's notes.
    """

    def __init__(self, store: Store | str, *, pcl: Any = None):
        self.store = store if isinstance(store, Store) else Store(store)
        self.pcl, self.pcl_notes = _load_pcl(pcl if pcl is not None else self.store.pcl, self.store)
        self._groups: tuple[np.ndarray, pd.Index] | None = None
        self._lookup: GeneLookup | None = None
        self._is_ref: np.ndarray | None = None
        self._ref_order: np.ndarray | None = None
        self._fallback_keys: list[np.ndarray] = []
        self._plan: SummaryPlan | None = None
        self._null: np.ndarray | None = None
        self._backgrounds: dict[tuple[str, str], tuple[Any, np.ndarray | None]] = {}
        self._fdr_nulls: dict[str, Any] = {}  # random-query FDR nulls by key (fdr_null.py)

    # ------------------------------------------------------------------ public
    def run(
        self,
        queries: Query | Sequence[Query] | ValidatedBatch,
        *,
        metric: str = "wtcs",
        space: str | None = None,
        min_genes: int = DEFAULT_MIN_GENES,
        max_genes: int = DEFAULT_MAX_GENES,
        on_invalid: str = "raise",
        ncs: bool = True,
        fdr: bool = True,
        tau: bool = True,
        tau_method: str = "exact",
        fdr_method: str | None = None,
        fdr_null_size: int | None = None,
        fdr_seed: int | None = None,
        ncs_mode: str = "gutc",
        summaries: bool = True,
        block_size: int = 65536,
        progress: Progress | None = None,
        require_levels: Sequence[str] | None = None,
        **method_options: Any,
    ) -> QueryResult:
        """Score ``queries`` against every signature of the store.

        Parameters
        ----------
        queries:
            :class:`~opencmap.query.genesets.Query` objects (gene sets or vectors), or a
            :class:`~opencmap.query.genesets.ValidatedBatch` validated before for the same space,
            ``min_genes``, ``max_genes`` and ``on_invalid`` (not validated again).
        metric:
            ``wtcs`` (default), ``cs``, ``lamb``, ``xsum``, ``rankz``, ``cosine``, ``pearson``,
            ``spearman``.
        space:
            Feature space (default: the store's default, BING when built from a gene table).
        min_genes, max_genes:
            Allowed genes per direction after restriction to the space.
        on_invalid:
            ``raise`` (default) or ``skip`` (warn and drop invalid queries).
        ncs, fdr, tau, summaries:
            Post-processing steps for connectivity metrics (ignored for the others).
        tau_method:
            ``exact`` (default) or ``cmap`` (the CMap 10,001-bin lookup grid, CMap-compat).
        fdr_method:
            ``random_query_pooled`` (default: nominal p against random queries of the query's
            sizes with a tail pooled over signatures, Benjamini-Hochberg across signatures),
            ``random_query`` (the same, each signature's own null only) or ``cmap`` (cmapM
            ``computeFDRGsea`` against the null signatures, with per-side flags); see
            :mod:`opencmap.query.fdr_null`.
        fdr_null_size, fdr_seed:
            Random queries per size (default 1000) and their seed (default 0), random-query methods only.
        ncs_mode:
            ``gutc`` (default; per query column, CMap GUTC), ``cmap`` (sig_queryl1k quirks) or
            ``clean``; see :func:`opencmap.kernels.ncs.ncs`.
        block_size:
            Maximum signatures per block (reduced automatically to bound memory).
        progress:
            ``progress(done, total)`` in signatures scored.
        require_levels:
            Result levels the caller will read: one this run cannot produce (a PCL level without
            PCLs, a summary level of a non-connectivity metric) is refused before anything is
            scored (:class:`~opencmap.errors.QueryError`).
        method_options:
            Options of the metric (e.g. ``es_tail="up"``, ``k=100`` for xsum).

        Tails (wtcs, cs; cmapM ``es_tail``): without ``es_tail`` each query is scored on the
        tail its genes give: ``both`` (up and down genes: WTCS), ``up`` (only up genes: ES_up)
        or ``down`` (only down genes: -ES_dn), so one batch may mix them. ``es_tail`` forces
        one tail for every query (a query lacking that side is refused). One-sided queries are
        noted (:class:`~opencmap.errors.OneSidedQueryWarning`), and tau is read only from a
        background of the query's tail and metric; without one, tau is left NaN for those
        queries with a note (:class:`~opencmap.errors.TauUnavailableWarning`). What each query
        used is in ``result.provenance`` (and ``describe()``).
        """
        from opencmap.query.pcl import check_levels

        method = get_method(metric)
        explicit_tail = method_options.get("es_tail")
        check_levels(require_levels, self.pcl, summaries=method.connectivity and ncs and summaries)
        options = method.options(method_options)
        if on_invalid not in ("raise", "skip"):
            raise ConfigError(f"on_invalid must be 'raise' or 'skip', got {on_invalid!r}")
        if tau_method not in ("exact", "cmap"):
            raise ConfigError(f"tau_method must be 'exact' or 'cmap', got {tau_method!r}")
        fdr_params = _fdr_params(fdr_method, fdr_null_size, fdr_seed)
        qlist: list[Query] | ValidatedBatch
        qlist = queries if isinstance(queries, ValidatedBatch) else [queries] if isinstance(queries, Query) else list(queries)
        if isinstance(qlist, list) and not qlist:
            raise QueryError("no queries given")
        check_unique_names(qlist.queries if isinstance(qlist, ValidatedBatch) else qlist)
        sp = self.store.space(space)
        notes: list[str] = []
        valid = self._validate(qlist, method, sp, min_genes=min_genes, max_genes=max_genes, on_invalid=on_invalid, notes=notes)
        tails = _query_tails(valid, method, explicit_tail)
        if "es_tail" in options:
            # what was used, not the default: one tail for the batch, else "per query"
            options["es_tail"] = tails[0] if len(set(tails)) == 1 else "per query"
        provenance: dict[str, Any] = {"queries": [_tail_provenance(t, method.name) for t in tails]}
        _note_one_sided(valid, tails, explicit_tail, notes)
        if method.kind == "geneset":
            raw = self._score_genesets(valid, method, options, sp.name, sp.n_features, block_size, progress, tails=tails)
        else:
            raw = self._score_vectors(valid, method, options, sp.name, block_size, progress)
        if method.finalize is not None:
            raw = method.finalize(raw, **options)
        metrics: dict[str, np.ndarray] = {method.name: raw.pop("score"), **raw}
        if method.connectivity:
            _note_undefined(metrics[method.name], valid, method.name, notes, provenance)
        info = self.store.sig_info
        levels: dict[str, LevelResult] = {}
        if method.connectivity and summaries:
            notes.extend(self.pcl_notes)
        tau_log: dict[str, Any] | None = None
        if method.connectivity and ncs and tau:
            tau_log = {"method": tau_method, "levels": {}}
        params: dict[str, Any] = {}
        fdr_info: dict[str, Any] = {}
        if method.connectivity and ncs:
            ncs_values = self.normalise(metrics[method.name], mode=ncs_mode)
            metrics["ncs"] = ncs_values
            if fdr:
                fdr_out = self._fdr(ncs_values, metrics[method.name], valid, method.name, sp.name, options, fdr_params, notes)
                if fdr_out is not None:
                    metrics.update(fdr_out.metrics)
                    fdr_info = fdr_out.info
                    params.update(fdr_params)
                    for key in ("fdr_q", "fdr_p"):  # undefined scores have no q (NaN, not 1)
                        if key in metrics:
                            metrics[key] = _nan_where_undefined(metrics[key], ncs_values)
                    if "fdr_q_nlog10" in metrics:
                        metrics["fdr_q_nlog10"] = (-np.log10(metrics["fdr_q"].astype(np.float64) + np.finfo(np.float64).eps)).astype(np.float32)
            if tau_log is not None:
                t = self._tau("sig", ncs_values, tau_method, notes, tails=tails, metric=method.name, log_to=tau_log)
                if t is not None:
                    metrics["tau"] = t
            if summaries:
                for level, (index, values) in self.summary_plan.apply(ncs_values).items():
                    lm = {"ncs": values}
                    if tau_log is not None:
                        t = self._tau(level, values, tau_method, notes, index=index, tails=tails, metric=method.name, log_to=tau_log)
                        if t is not None:
                            lm["tau"] = t
                    levels[level] = LevelResult(level, index, lm)
        if tau_log is not None:
            _finish_tau_provenance(tau_log, [v.name for v in valid], tails, method.name, notes, provenance)
        levels = {"sig": LevelResult("sig", info, metrics), **levels}
        return QueryResult(
            queries=valid,
            levels=levels,
            method=method.name,
            space=sp.name,
            params={"metric": method.name, "space": sp.name, "tau_method": tau_method, **params, **options},
            notes=notes,
            provenance=provenance,
            fdr=fdr_info,
        )

    def normalise(self, scores: np.ndarray, *, mode: str = "gutc") -> np.ndarray:
        """NCS (S, Q) of raw connectivity scores (S, Q) with the store's groups and references.

        Groups without reference signatures borrow (GUTC) from groups of the same pert_type,
        then the same cell line, then all groups. NaN scores (undefined) give NaN in every mode
        (``cmap`` mode's NaN -> 0 applies only to scores that are defined).
        """
        from opencmap.kernels.ncs import ncs as ncs_kernel
        from opencmap.kernels.ncs import reference_order

        codes, labels = self.groups
        if self._is_ref is None:
            self._is_ref = reference_mask(self.store.sig_info)
            self._ref_order = reference_order(codes, self._is_ref)
            parts = pd.Series(list(labels), dtype=object).str.split(":", n=1)
            self._fallback_keys = [pd.factorize(parts.str[i])[0].astype(np.int64) for i in (0, 1)]
        options: dict[str, Any] = {"mode": mode, "ref_order": self._ref_order}
        if mode == "gutc":
            options["fallback_keys"] = self._fallback_keys
        out = np.asarray(ncs_kernel(scores, codes, self._is_ref, **options), dtype=np.float32)
        if mode == "cmap":
            # sig_queryl1k sets NaN NCS to 0; an undefined score (NaN WTCS) stays undefined here
            undefined = np.isnan(scores)
            if undefined.any():
                out[undefined] = np.nan
        return out

    @property
    def groups(self) -> tuple[np.ndarray, pd.Index]:
        """NCS group codes of the store's signatures and their labels (cached)."""
        if self._groups is None:
            self._groups = ncs_groups(self.store.sig_info)
        return self._groups

    @property
    def summary_plan(self) -> SummaryPlan:
        """Summary levels of the store's signatures (and the engine's PCLs), built once."""
        if self._plan is None:
            self._plan = SummaryPlan.build(self.store.sig_info, pcl=self.pcl)
        return self._plan

    # ------------------------------------------------------------------ steps
    def _validate(
        self,
        queries: list[Query] | ValidatedBatch,
        method: Method,
        sp: Any,
        *,
        min_genes: int,
        max_genes: int,
        on_invalid: str,
        notes: list[str],
    ) -> list[ValidatedQuery]:
        """Validate every query (:func:`~opencmap.query.genesets.validate_queries`), or take a batch
        validated before for the same space and settings; gene mappings, ambiguous, unknown and
        dropped genes and skipped queries are warned of (:class:`~opencmap.errors.GeneIdentityWarning`
        categories) and appended to ``notes``."""
        if isinstance(queries, ValidatedBatch):
            batch = queries
            if not batch.matches(sp, min_genes=min_genes, max_genes=max_genes, on_invalid=on_invalid, metric_kind=method.kind):
                raise ConfigError(
                    f"the queries were validated for space {batch.space!r}, min_genes={batch.min_genes}, "
                    f"max_genes={batch.max_genes}, on_invalid={batch.on_invalid!r} and {batch.metric_kind} metrics; "
                    f"this run uses space {sp.name!r}, min_genes={min_genes}, max_genes={max_genes}, "
                    f"on_invalid={on_invalid!r} and metric {method.name!r}: validate them again or pass the queries"
                )
        else:
            if self._lookup is None:
                self._lookup = GeneLookup(self.store.genes)
            batch = validate_queries(
                queries, sp, self._lookup, metric=method.name, min_genes=min_genes, max_genes=max_genes, on_invalid=on_invalid
            )
        batch.emit(stacklevel=2)
        for v in batch.queries:
            if v.unknown or v.dropped:
                log.info("query %s: %d unknown and %d out-of-space genes dropped", v.name, len(v.unknown), len(v.dropped))
        notes.extend(batch.notes)
        if not batch.queries:
            raise QueryError("no valid query left to run")
        return list(batch.queries)

    def _score_genesets(
        self,
        valid: list[ValidatedQuery],
        method: Method,
        options: Mapping[str, Any],
        space: str,
        n_features: int,
        block_size: int,
        progress: Progress | None,
        *,
        tails: Sequence[str | None] = (),
    ) -> dict[str, np.ndarray]:
        if method.name in _FUSED_ES:
            return self._score_enrichment(valid, method, options, space, n_features, block_size, progress, tails=tails)
        # union of rows, ordered query by query so a lone query reads its rows as two slices
        order: dict[int, int] = {}
        for v in valid:
            for r in (*v.up_rows.tolist(), *v.down_rows.tolist()):
                order.setdefault(int(r), len(order))
        union = np.fromiter(order, dtype=np.intp, count=len(order))
        picks: list[tuple[Any, Any]] = []
        for v in valid:
            picks.append((_pick(order, v.up_rows), _pick(order, v.down_rows)))
        n_sig = self.store.n_signatures
        outputs = {name: np.full((n_sig, len(valid)), np.nan, dtype=np.float32) for name in method.outputs}
        k = _block_columns(len(union), block_size)
        for start, stop, ranks, scores in self.store.iter_gene_rows(union, space=space, block_size=k):
            assert ranks is not None
            for j, (pu, pd_) in enumerate(picks):
                up = None if pu is None else SetBlock(ranks[pu], scores[pu])
                dn = None if pd_ is None else SetBlock(ranks[pd_], scores[pd_])
                res = method.score(up, dn, n_features=n_features, **options)
                for name, values in res.items():
                    if name in outputs:
                        outputs[name][start:stop, j] = values
            if progress is not None:
                progress(stop, n_sig)
        return {name: arr for name, arr in outputs.items() if not np.isnan(arr).all() or name == "score"}

    def _score_enrichment(
        self,
        valid: list[ValidatedQuery],
        method: Method,
        options: Mapping[str, Any],
        space: str,
        n_features: int,
        block_size: int,
        progress: Progress | None,
        *,
        tails: Sequence[str | None] = (),
    ) -> dict[str, np.ndarray]:
        """WTCS / CS with the fused kernel: every up and down set of every query in one pass,
        read in place from the memory-mapped gene-major store (no gathered copies). Query ``j``
        is combined on ``tails[j]`` (default: the tail its sets give)."""
        from opencmap.kernels.wtcs import combine_tails, set_enrichment_scores

        weighted = _FUSED_ES[method.name]
        if not tails:
            tails = _query_tails(valid, method, options.get("es_tail"))
        sets = [rows for v in valid for rows in (v.up_rows, v.down_rows)]
        rows = np.concatenate([np.asarray(r, dtype=np.int64) for r in sets])
        bounds = np.concatenate([[0], np.cumsum([len(r) for r in sets])]).astype(np.int64)
        n_sig = self.store.n_signatures
        outputs = {name: np.full((n_sig, len(valid)), np.nan, dtype=np.float32) for name in method.outputs}
        # ES / leading edge of every set for a block of signatures: bounded memory
        k = int(max(_TILE_MIN, min(block_size, _ES_BLOCK_BYTES // (16 * len(sets)))))
        es = np.empty((len(sets), k), dtype=np.float64)
        leadf = np.empty_like(es)
        # a store larger than RAM faults in exactly the pages asked for (Store.random_access):
        # iter_blocks asks for the next block's rows while the kernel computes this one
        for start, stop, r_mm, s_mm, lo, hi in self.store.iter_blocks(rows, space=space, block_size=k, with_scores=weighted):
            e, lf = es[:, : hi - lo], leadf[:, : hi - lo]
            set_enrichment_scores(r_mm, s_mm, rows, bounds, n_features, weighted=weighted, columns=(lo, hi), out=(e, lf))
            for j, v in enumerate(valid):
                up = e[2 * j] if len(v.up_rows) else None
                dn = e[2 * j + 1] if len(v.down_rows) else None
                outputs["score"][start:stop, j] = combine_tails(up, dn, tails[j] or "both")
                for name, idx, on in (("es_up", 2 * j, up), ("leadf_up", 2 * j, up), ("es_dn", 2 * j + 1, dn), ("leadf_dn", 2 * j + 1, dn)):
                    if on is not None and name in outputs:
                        outputs[name][start:stop, j] = (e if name.startswith("es") else lf)[idx]
            if progress is not None:
                progress(stop, n_sig)
        return {name: arr for name, arr in outputs.items() if not np.isnan(arr).all() or name == "score"}

    def _score_vectors(
        self,
        valid: list[ValidatedQuery],
        method: Method,
        options: Mapping[str, Any],
        space: str,
        block_size: int,
        progress: Progress | None,
    ) -> dict[str, np.ndarray]:
        n_sig = self.store.n_signatures
        outputs = {name: np.full((n_sig, len(valid)), np.nan, dtype=np.float32) for name in method.outputs}
        masks = [np.isfinite(v.vector) for v in valid]  # type: ignore[arg-type]
        rows = np.flatnonzero(np.logical_or.reduce(masks))
        k = _block_columns(len(rows), block_size)
        for start, stop, _, scores in self.store.iter_gene_rows(rows, space=space, block_size=k, with_ranks=False):
            for j, v in enumerate(valid):
                sel = np.flatnonzero(masks[j][rows])
                vec = v.vector[rows[sel]]  # type: ignore[index]
                res = method.score(vec, scores[sel], **options)
                for name, values in res.items():
                    if name in outputs:
                        outputs[name][start:stop, j] = values
            if progress is not None:
                progress(stop, n_sig)
        return outputs

    def _fdr(
        self,
        ncs_values: np.ndarray,
        scores: np.ndarray,
        valid: list[ValidatedQuery],
        metric: str,
        space: str,
        options: Mapping[str, Any],
        fdr_params: Mapping[str, Any],
        notes: list[str],
    ) -> Any:
        """FDR step (:mod:`opencmap.query.fdr_null`): the ``cmap`` method on NCS against the null
        signatures, or random-query nominal p-values of the raw scores with BH."""
        from opencmap.query.fdr_null import cmap_fdr, random_query_fdr

        names = [v.name for v in valid]
        if fdr_params["fdr_method"] != "cmap":
            out = random_query_fdr(
                self.store, scores, valid, metric=metric, space=space, options=_null_options(options),
                n_random=fdr_params["fdr_null_size"], seed=fdr_params["fdr_seed"],
                pooled=fdr_params["fdr_method"] == "random_query_pooled", nulls=self._fdr_nulls,
            )  # fmt: skip
        else:
            if self._null is None:
                self._null = null_mask(self.store.sig_info)
            if not self._null.any():
                notes.append("fdr_q not computed: the store has no null signatures (is_null_sig / ctl_* pert types) for the cmap FDR method")
                return None
            out = cmap_fdr(ncs_values, self._null, names)
        notes.extend(out.notes)
        return out

    def _background(self, level: str, tail: str, index: pd.DataFrame | None) -> tuple[Any, np.ndarray | None]:
        """The store's background of ``level`` and ``tail`` and the level's rows in it (cached)."""
        from opencmap.query.background import load_background

        key = (level, tail)
        if key not in self._backgrounds:
            bg = load_background(self.store, level, tail)
            rows = None if bg is None else bg.keys_for(self.store.sig_info if index is None else index)
            self._backgrounds[key] = (bg, rows)
        return self._backgrounds[key]

    def _tau(
        self,
        level: str,
        values: np.ndarray,
        tau_method: str,
        notes: list[str],
        *,
        index: pd.DataFrame | None = None,
        tails: Sequence[str | None] = (),
        metric: str = "wtcs",
        log_to: dict[str, Any] | None = None,
    ) -> np.ndarray | None:
        """tau (n, Q) of ``values`` at ``level``: each query column against the background of its
        tail (``tails``, default ``both``) and ``metric``; NaN columns where the store has none.
        None when no column has a background. What was used goes to ``log_to["levels"][level]``."""
        tails = list(tails) or ["both"] * values.shape[1]
        out: np.ndarray | None = None
        used: dict[str, Any] = {}
        for tail in dict.fromkeys(tails):
            cols = [j for j, t in enumerate(tails) if t == tail]
            kind = tail or "both"
            bg, rows = self._background(level, kind, index)
            record: dict[str, Any] = {"tail": kind, "metric": metric, "available": False}
            used[kind] = record
            if bg is None or rows is None:
                record["reason"] = "no background of this kind"
                continue
            record["background"] = {"tail": bg.tail, "metric": bg.metric, "n_queries": bg.entry.get("n_queries")}
            if bg.metric != metric:
                record["reason"] = f"the background was built with {bg.metric}, not {metric}"
                continue
            stale = int(bg.entry.get("appended_since_built", 0))
            record.update(available=True, stale=bool(stale), appended_since_built=stale)
            if stale:
                note = (
                    f"tau ({level}{'' if kind == 'both' else f', tail {kind}'}) uses a background built before {stale} "
                    "signatures were appended; they have no tau until it is rebuilt (run `opencmap store background`)"
                )
                if note not in notes:
                    notes.append(note)
            sub = values if len(cols) == values.shape[1] else values[:, cols]
            t = bg.tau(sub, rows, method=tau_method)
            if len(cols) == values.shape[1]:
                out = t
            else:
                if out is None:
                    out = np.full(values.shape, np.nan, dtype=np.float32)
                out[:, cols] = t
        if log_to is not None:
            log_to["levels"][level] = used
        return out


def _query_tails(valid: Sequence[ValidatedQuery], method: Method, explicit: str | None) -> list[str | None]:
    """The tail each query is scored on (None for vector queries): ``explicit`` (``es_tail``
    given) for every query, else ``both``/``up``/``down`` from the sides it has (cmapM ``es_tail``).
    Raises :class:`QueryError` when ``explicit`` needs a side a query lacks."""
    from opencmap.kernels.wtcs import ES_TAILS

    if explicit is not None and explicit not in ES_TAILS:
        raise ConfigError(f"es_tail must be one of {ES_TAILS}, got {explicit!r}")
    tails: list[str | None] = []
    for v in valid:
        if v.is_vector or method.kind != "geneset":
            tails.append(None)
            continue
        has_up, has_dn = len(v.up_rows) > 0, len(v.down_rows) > 0
        auto = "both" if has_up and has_dn else "up" if has_up else "down"
        if explicit is None:
            tails.append(auto)
            continue
        need = {"both": has_up and has_dn, "up": has_up, "down": has_dn}[explicit]
        if not need:
            sides = "only up" if has_up else "only down"
            raise QueryError(
                f"query {v.name!r} has {sides} genes but es_tail={explicit!r} was asked for; give the "
                f"missing genes or leave es_tail out (the query is then scored on its {auto} tail)"
            )
        tails.append(explicit)
    return tails


_TAIL_SCORE = {"both": "wtcs: (ES_up - ES_dn)/2, 0 if same sign", "up": "ES_up", "down": "-ES_dn"}


def _tail_provenance(tail: str | None, metric: str) -> dict[str, Any]:
    if tail is None:
        return {}
    score = _TAIL_SCORE[tail] if metric in _FUSED_ES else None
    return {"tail": tail, **({"score": score.replace("wtcs", metric)} if score else {})}


def _note_one_sided(valid: Sequence[ValidatedQuery], tails: Sequence[str | None], explicit: str | None, notes: list[str]) -> None:
    """A note (and :class:`OneSidedQueryWarning`) per tail for the queries scored on one tail."""
    for tail in ("up", "down"):
        names = [v.name for v, t in zip(valid, tails, strict=True) if t == tail]
        if not names:
            continue
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        why = f"es_tail={tail!r} was asked for" if explicit else f"they have only {tail} genes"
        score = "ES_up" if tail == "up" else "-ES_dn"
        note = (
            f"{len(names)} {'query' if len(names) == 1 else 'queries'} scored on the {tail} tail only ({shown}): {why}; "
            f"score = {score} (cmapM es_tail={tail}), not the two-sided WTCS, and tau needs a background of {tail}-only queries"
        )
        notes.append(note)
        warnings.warn(note, OneSidedQueryWarning, stacklevel=3)


def _note_undefined(
    scores: np.ndarray,
    valid: Sequence[ValidatedQuery],
    metric: str,
    notes: list[str],
    provenance: dict[str, Any],
) -> None:
    """Record per query how many signatures have an undefined (NaN) score; note it once."""
    if scores.ndim != 2 or scores.shape[1] != len(valid):
        return
    n_nan = np.count_nonzero(np.isnan(scores), axis=0)
    for j, n in enumerate(n_nan.tolist()):
        provenance["queries"][j]["n_undefined"] = int(n)
    hit = [(v.name, int(n)) for v, n in zip(valid, n_nan.tolist(), strict=True) if n]
    if not hit:
        return
    shown = ", ".join(f"{name}: {n}" for name, n in hit[:5]) + (" ..." if len(hit) > 5 else "")
    why = " (every set gene of those signatures has weight 0, or no set gene is present), as cmapM" if metric in _FUSED_ES else ""
    note = f"{metric} is undefined (NaN) for some signatures ({shown}){why}; NCS, tau, FDR and summaries skip them"
    notes.append(note)
    warnings.warn(note, UndefinedScoreWarning, stacklevel=3)


def _nan_where_undefined(q: np.ndarray, ncs_values: np.ndarray) -> np.ndarray:
    """q-values of undefined (NaN) scores are NaN, not 1: there is no connection to assess."""
    undefined = np.isnan(ncs_values)
    if undefined.any():
        q = q.copy()
        q[undefined] = np.nan
    return q


def _finish_tau_provenance(
    tau_log: dict[str, Any],
    names: Sequence[str],
    tails: Sequence[str | None],
    metric: str,
    notes: list[str],
    provenance: dict[str, Any],
) -> None:
    """Per query: the tau background used (kind, size, match, staleness); notes and warnings for
    queries left without tau."""
    levels: dict[str, dict[str, Any]] = tau_log["levels"]
    provenance["tau"] = {"method": tau_log["method"], "levels": levels}
    for j, tail in enumerate(tails):
        kind = tail or "both"
        sig = levels.get("sig", {}).get(kind, {})
        entry: dict[str, Any] = {
            "available": bool(sig.get("available")),
            "kind": {"tail": kind, "metric": metric},
            "levels": [lv for lv, used in levels.items() if used.get(kind, {}).get("available")],
        }
        if "background" in sig:
            bg = sig["background"]
            entry["background"] = bg
            entry["n_background_queries"] = bg.get("n_queries")
            entry["matches_query"] = bg.get("tail") == kind and bg.get("metric") == metric
        else:
            entry["background"] = None
            entry["matches_query"] = False
        entry["stale"] = bool(sig.get("stale", False))
        entry["appended_since_built"] = int(sig.get("appended_since_built", 0))
        if not entry["available"]:
            entry["reason"] = sig.get("reason", "no background of this kind")
        provenance["queries"][j]["tau"] = entry
    for kind in dict.fromkeys(t or "both" for t in tails):
        sig = levels.get("sig", {}).get(kind, {})
        kind_names = [name for name, t in zip(names, tails, strict=True) if (t or "both") == kind]
        if sig.get("available"):
            missing = [lv for lv, used in levels.items() if lv != "sig" and not used.get(kind, {}).get("available")]
            if missing:
                notes.append(
                    f"tau ({', '.join(missing)}) not computed for the {kind}-tail queries: the store's {kind} "
                    f"background has no such level (rebuild it with `opencmap store background --tail {kind}`"
                    f"{' --pcl PCL.gmt' if any(m.startswith('pcl') for m in missing) else ''})"
                )
            if sig.get("stale"):
                warnings.warn(
                    f"tau of the {kind}-tail queries uses a background built before {sig['appended_since_built']} "
                    "signatures were appended (they get no tau); rebuild it with `opencmap store background`",
                    BackgroundMismatchWarning,
                    stacklevel=3,
                )
            continue
        shown = ", ".join(kind_names[:5]) + (f" and {len(kind_names) - 5} more" if len(kind_names) > 5 else "")
        if "background" in sig:
            note = (
                f"tau not computed for {shown} (tail {kind}, {metric}): {sig.get('reason')}; "
                f"tau is only read from a background of the query's own kind"
            )
        elif kind == "both":
            note = f"tau not computed for {shown}: the store has no background (run `opencmap store background`)"
        else:
            note = (
                f"tau not computed for {shown}: the store has no background of {kind}-only queries, and a "
                f"two-sided one would misstate a one-sided score (run `opencmap store background --tail {kind}`)"
            )
        notes.append(note)
        warnings.warn(note, TauUnavailableWarning, stacklevel=3)


def _null_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Method options for scoring random queries: a mixed batch's ``es_tail="per query"`` is
    dropped, since a random query of a query's sizes gets that query's tail from its sides."""
    out = dict(options)
    if out.get("es_tail") == "per query":
        del out["es_tail"]
    return out


def _fdr_params(method: str | None, null_size: int | None, seed: int | None) -> dict[str, Any]:
    from opencmap.query.fdr_null import DEFAULT_FDR_METHOD, DEFAULT_FDR_SEED, DEFAULT_NULL_SIZE, FDR_METHODS

    method = DEFAULT_FDR_METHOD if method is None else method
    if method not in FDR_METHODS:
        raise ConfigError(f"fdr_method must be one of {FDR_METHODS}, got {method!r}")
    if method == "cmap":
        if null_size is not None or seed is not None:
            raise ConfigError("fdr_null_size and fdr_seed apply to the random-query FDR methods only")
        return {"fdr_method": method}
    n = DEFAULT_NULL_SIZE if null_size is None else int(null_size)
    if n < 1:
        raise ConfigError(f"fdr_null_size must be >= 1, got {null_size}")
    return {"fdr_method": method, "fdr_null_size": n, "fdr_seed": DEFAULT_FDR_SEED if seed is None else int(seed)}


def _pick(order: Mapping[int, int], rows: np.ndarray) -> slice | np.ndarray | None:
    if len(rows) == 0:
        return None
    idx = np.fromiter((order[int(r)] for r in rows), dtype=np.intp, count=len(rows))
    if np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx))):
        return slice(int(idx[0]), int(idx[0]) + len(idx))
    return idx


def _block_columns(n_rows: int, block_size: int) -> int:
    per_col = max(n_rows, 1) * 6
    return int(max(256, min(block_size, _BLOCK_BYTES // per_col)))


def _load_pcl(pcl: Any, store: Store) -> tuple[dict[str, tuple[str, ...]] | None, list[str]]:
    if pcl is None:
        return None, []
    from opencmap.query.pcl import load_pcls

    info = store.sig_info
    names = info["pert_iname"] if "pert_iname" in info.columns else ()
    return load_pcls(pcl, info["pert_id"] if "pert_id" in info.columns else (), pert_names=names)


# ---------------------------------------------------------------------------------- one-call API
def run_query(
    store: Store | str,
    up: Iterable[str] | Mapping[str, Iterable[str]] | None = None,
    down: Iterable[str] | Mapping[str, Iterable[str]] | None = None,
    *,
    queries: Sequence[Query] | None = None,
    name: str = "query",
    pcl: Any = None,
    **options: Any,
) -> QueryResult:
    """Run one query (``up``/``down`` lists), several (dicts by name) or ``queries`` on ``store``.

    Options are those of :meth:`Engine.run` (``metric``, ``space``, ``min_genes``, ...).
    """
    if queries is None:
        if up is None and down is None:
            raise QueryError("give up and/or down genes, or queries=")
        queries = as_queries(up, down, name=name)
    return Engine(store, pcl=pcl).run(queries, **options)


def connectivity_matrix(
    store: Store | str,
    sig_ids: Sequence[str] | None = None,
    *,
    references: Sequence[str] | None = None,
    n_genes: int = 50,
    query_space: str | None = None,
    metric: str = "wtcs",
    normalise: bool = True,
    symmetric: bool = True,
    min_genes: int = 1,
    progress: Progress | None = None,
) -> GCT:
    """All-vs-all connectivity (introspection): signatures as queries against signatures.

    Each signature of ``sig_ids`` (default: all) becomes a query of its top/bottom ``n_genes``
    genes (picked in ``query_space``, default ``lm`` if present, spec §6.6); it is scored against
    the store, normalised (NCS over the whole store) and restricted to ``references`` (default:
    the same signatures). With ``symmetric`` and identical query/reference sets, the matrix is
    averaged with its transpose (cmapM introspect). Returns a GCT references x queries.
    """
    st = store if isinstance(store, Store) else Store(store)
    ids = list(st.sig_ids) if sig_ids is None else [str(s) for s in sig_ids]
    refs = ids if references is None else [str(s) for s in references]
    queries = signature_queries(st, ids, n_genes=n_genes, space=query_space)
    engine = Engine(st)
    res = engine.run(
        queries,
        metric=metric,
        min_genes=min_genes,
        max_genes=max(n_genes, DEFAULT_MAX_GENES),
        ncs=normalise,
        fdr=False,
        tau=False,
        summaries=False,
        progress=progress,
    )
    key = "ncs" if normalise and get_method(metric).connectivity else metric
    values = res.level("sig").metrics[key][st.sig_positions(refs)]
    if symmetric and refs == ids:
        values = 0.5 * (values + values.T)
    info = st.sig_info.set_index("sig_id")
    return GCT(values, rids=refs, cids=ids, row_meta=info.loc[refs], col_meta=info.loc[ids])
