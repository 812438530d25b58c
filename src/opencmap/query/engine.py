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
from opencmap.errors import ConfigError, GeneSetError, OpenCMapWarning, QueryError
from opencmap.query.genesets import (
    DEFAULT_MAX_GENES,
    DEFAULT_MIN_GENES,
    GeneLookup,
    Query,
    ValidatedQuery,
    as_queries,
    signature_queries,
    validate_query,
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
        the classes stored with the store at build time (:attr:`Store.pcl`), if any.
    """

    def __init__(self, store: Store | str, *, pcl: Any = None):
        self.store = store if isinstance(store, Store) else Store(store)
        self.pcl = _load_pcl(pcl) if pcl is not None else self.store.pcl
        self._groups: tuple[np.ndarray, pd.Index] | None = None
        self._lookup: GeneLookup | None = None
        self._is_ref: np.ndarray | None = None
        self._ref_order: np.ndarray | None = None
        self._fallback_keys: list[np.ndarray] = []
        self._plan: SummaryPlan | None = None
        self._null: np.ndarray | None = None
        self._backgrounds: dict[str, tuple[Any, np.ndarray | None]] = {}

    # ------------------------------------------------------------------ public
    def run(
        self,
        queries: Query | Sequence[Query],
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
        ncs_mode: str = "gutc",
        summaries: bool = True,
        block_size: int = 65536,
        progress: Progress | None = None,
        **method_options: Any,
    ) -> QueryResult:
        """Score ``queries`` against every signature of the store.

        Parameters
        ----------
        queries:
            :class:`~opencmap.query.genesets.Query` objects (gene sets or vectors).
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
        ncs_mode:
            ``gutc`` (default; per query column, CMap GUTC), ``cmap`` (sig_queryl1k quirks) or
            ``clean``; see :func:`opencmap.kernels.ncs.ncs`.
        block_size:
            Maximum signatures per block (reduced automatically to bound memory).
        progress:
            ``progress(done, total)`` in signatures scored.
        method_options:
            Options of the metric (e.g. ``es_tail="up"``, ``k=100`` for xsum).
        """
        method = get_method(metric)
        options = method.options(method_options)
        if on_invalid not in ("raise", "skip"):
            raise ConfigError(f"on_invalid must be 'raise' or 'skip', got {on_invalid!r}")
        if tau_method not in ("exact", "cmap"):
            raise ConfigError(f"tau_method must be 'exact' or 'cmap', got {tau_method!r}")
        qlist = [queries] if isinstance(queries, Query) else list(queries)
        if not qlist:
            raise QueryError("no queries given")
        names = [q.name for q in qlist]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})[:5]
            raise QueryError(f"query names must be unique; repeated: {dup}")
        sp = self.store.space(space)
        valid = self._validate(qlist, method, sp, min_genes=min_genes, max_genes=max_genes, on_invalid=on_invalid)
        if method.kind == "geneset":
            raw = self._score_genesets(valid, method, options, sp.name, sp.n_features, block_size, progress)
        else:
            raw = self._score_vectors(valid, method, options, sp.name, block_size, progress)
        if method.finalize is not None:
            raw = method.finalize(raw, **options)
        metrics: dict[str, np.ndarray] = {method.name: raw.pop("score"), **raw}
        info = self.store.sig_info
        levels: dict[str, LevelResult] = {}
        notes: list[str] = []
        if method.connectivity and ncs:
            ncs_values = self.normalise(metrics[method.name], mode=ncs_mode)
            metrics["ncs"] = ncs_values
            if fdr:
                q = self._fdr(ncs_values, notes)
                if q is not None:
                    metrics["fdr_q"] = q
                    metrics["fdr_q_nlog10"] = (-np.log10(q.astype(np.float64) + np.finfo(np.float64).eps)).astype(np.float32)
            if tau:
                t = self._tau("sig", ncs_values, tau_method, notes)
                if t is not None:
                    metrics["tau"] = t
            if summaries:
                for level, (index, values) in self.summary_plan.apply(ncs_values).items():
                    lm = {"ncs": values}
                    if tau:
                        t = self._tau(level, values, tau_method, notes, index=index)
                        if t is not None:
                            lm["tau"] = t
                    levels[level] = LevelResult(level, index, lm)
        levels = {"sig": LevelResult("sig", info, metrics), **levels}
        return QueryResult(
            queries=valid,
            levels=levels,
            method=method.name,
            space=sp.name,
            params={"metric": method.name, "space": sp.name, "tau_method": tau_method, **options},
            notes=notes,
        )

    def normalise(self, scores: np.ndarray, *, mode: str = "gutc") -> np.ndarray:
        """NCS (S, Q) of raw connectivity scores (S, Q) with the store's groups and references.

        Groups without reference signatures borrow (GUTC) from groups of the same pert_type,
        then the same cell line, then all groups.
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
        return np.asarray(ncs_kernel(scores, codes, self._is_ref, **options), dtype=np.float32)

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
        self, qlist: list[Query], method: Method, sp: Any, *, min_genes: int, max_genes: int, on_invalid: str
    ) -> list[ValidatedQuery]:
        valid: list[ValidatedQuery] = []
        for q in qlist:
            if q.is_vector != (method.kind == "vector"):
                want = "a numeric vector" if method.kind == "vector" else "up/down gene sets"
                raise QueryError(f"metric {method.name!r} needs {want}; query {q.name!r} is not")
            try:
                if self._lookup is None:
                    self._lookup = GeneLookup(self.store.genes)
                v = validate_query(q, sp, self._lookup, min_genes=min_genes, max_genes=max_genes)
            except GeneSetError as exc:
                if on_invalid == "raise":
                    raise
                warnings.warn(f"skipped: {exc}", OpenCMapWarning, stacklevel=3)
                continue
            if v.unknown or v.dropped:
                log.info("query %s: %d unknown and %d out-of-space genes dropped", v.name, len(v.unknown), len(v.dropped))
            valid.append(v)
        if not valid:
            raise QueryError("no valid query left to run")
        return valid

    def _score_genesets(
        self,
        valid: list[ValidatedQuery],
        method: Method,
        options: Mapping[str, Any],
        space: str,
        n_features: int,
        block_size: int,
        progress: Progress | None,
    ) -> dict[str, np.ndarray]:
        if method.name in _FUSED_ES:
            return self._score_enrichment(valid, method, options, space, n_features, block_size, progress)
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
    ) -> dict[str, np.ndarray]:
        """WTCS / CS with the fused kernel: every up and down set of every query in one pass,
        read in place from the memory-mapped gene-major store (no gathered copies)."""
        from opencmap.kernels.wtcs import combine_tails, set_enrichment_scores

        weighted = _FUSED_ES[method.name]
        es_tail = options.get("es_tail", "both")
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
                tail = "down" if up is None else "up" if dn is None else es_tail
                outputs["score"][start:stop, j] = combine_tails(up, dn, tail)
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

    def _fdr(self, ncs_values: np.ndarray, notes: list[str]) -> np.ndarray | None:
        from opencmap.kernels.fdr import fdr_gsea

        if self._null is None:
            self._null = null_mask(self.store.sig_info)
        is_null = self._null
        if not is_null.any():
            notes.append("fdr_q not computed: the store has no null signatures (is_null_sig / ctl_* pert types)")
            return None
        return np.asarray(fdr_gsea(ncs_values, is_null), dtype=np.float32)

    def _tau(
        self,
        level: str,
        values: np.ndarray,
        tau_method: str,
        notes: list[str],
        *,
        index: pd.DataFrame | None = None,
    ) -> np.ndarray | None:
        from opencmap.query.background import load_background

        if level not in self._backgrounds:
            bg = load_background(self.store, level)
            rows = None if bg is None else bg.keys_for(self.store.sig_info if index is None else index)
            self._backgrounds[level] = (bg, rows)
        bg, rows = self._backgrounds[level]
        if bg is None or rows is None:
            if level == "sig":
                notes.append("tau not computed: the store has no background (run `opencmap store background`)")
            return None
        stale = self.store.stale_backgrounds.get(level, 0)
        if stale:
            note = (
                f"tau ({level}) uses a background built before {stale} signatures were appended; they have "
                "no tau until it is rebuilt (run `opencmap store background`)"
            )
            if note not in notes:
                notes.append(note)
        return bg.tau(values, rows, method=tau_method)


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


def _load_pcl(pcl: Any) -> dict[str, tuple[str, ...]] | None:
    if pcl is None:
        return None
    if isinstance(pcl, Mapping):
        return {str(k): tuple(str(x) for x in v) for k, v in pcl.items()}
    from opencmap.io import read_gmt

    return {s.name: tuple(s.genes) for s in read_gmt(pcl)}


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
