"""The query engine: validate queries, score every store signature, then NCS, FDR, tau, summaries.

One runner for every method (:mod:`opencmap.query.methods`, :func:`opencmap.query.runner.run_blocks`):
it reads from the store only the rows a batch of queries needs (the way the method's access
pattern says, in blocks of signatures so memory stays bounded), hands each query its rows, and
the engine applies the shared post-processing once::

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

Everything that depends only on the store is computed once per store generation, in its shared
:class:`~opencmap.query.reference.ReferenceIndex`, and reused by every engine and query: NCS
groups, the reference rows in group order, null flags, the summary levels' group index arrays,
the gene lookup and each level's background rows (read in place from the memory-mapped store
when aligned). The post-processing kernels are compiled and handle all query columns of a batch
in one call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from opencmap.backends import Backend, describe_backend, resolve_backend
from opencmap.errors import ConfigError, QueryError
from opencmap.query.genesets import DEFAULT_MAX_GENES, DEFAULT_MIN_GENES, Query, ValidatedBatch, ValidatedQuery, as_queries
from opencmap.query.introspect import connectivity_matrix
from opencmap.query.methods import Method, get_method
from opencmap.query.reference import ReferenceIndex, ncs_groups, null_mask, reference_mask, resolve_pcl, shared_store
from opencmap.query.result import LevelResult, QueryResult
from opencmap.query.runner import DEFAULT_BLOCK_SIZE, run_blocks
from opencmap.query.scoring import check_names, score_queries
from opencmap.query.store import Store
from opencmap.query.summaries import SummaryPlan
from opencmap.query.tau import finish_tau_provenance, level_tau

__all__ = ["Engine", "run_query", "connectivity_matrix", "ncs_groups", "null_mask", "reference_mask"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]



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
    backend:
        Where the work runs, with its threads and block budgets (:mod:`opencmap.backends`;
        default: this process, :func:`~opencmap.backends.default_backend`); also a scheduler
        address (``tcp://HOST:8786``) or a :class:`distributed.Client` (a
        :class:`~opencmap.backends.DaskBackend`). On a cluster the store scan runs on its workers
        (the store on a filesystem they share); NCS, FDR, tau and summaries run here on the
        assembled scores, so results are bit-identical to the local backend's. Results'
        provenance records the backend (``provenance["backend"]``).
    """

    def __init__(self, store: Store | str, *, pcl: Any = None, backend: Backend | str | None = None):
        self.backend = resolve_backend(backend)
        self.store = store if isinstance(store, Store) else Store(store, settings=self.backend.settings)
        self.pcl, self.pcl_notes = resolve_pcl(pcl, self.store)
        self._index: ReferenceIndex | None = None
        self._index_manifest: Any = None

    @property
    def index(self) -> ReferenceIndex:
        """The shared :class:`~opencmap.query.reference.ReferenceIndex` of the store's current
        generation and the engine's PCLs (a new one when the store's manifest changed)."""
        index, manifest = self._index, self.store.manifest
        # the index may have been built from another open copy of the same store (its manifest an
        # equal object): remember the manifest it was looked up for, so it is looked up once
        if index is None or self._index_manifest is not manifest:
            index = self._index = ReferenceIndex.of(self.store, self.pcl)
            self._index_manifest = manifest
        return index

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
        block_size: int = DEFAULT_BLOCK_SIZE,
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
        check_names(qlist)
        sp = self.store.space(space)
        ref = self.index  # one index for the whole run, even if the store gets a new generation meanwhile
        scored = score_queries(
            self.store, ref.lookup, qlist, method, options, sp, explicit_tail=explicit_tail, min_genes=min_genes,
            max_genes=max_genes, on_invalid=on_invalid, block_size=block_size, progress=progress, runner=self._score,
        )  # fmt: skip
        valid, tails, metrics, notes, provenance = scored.valid, scored.tails, scored.metrics, scored.notes, scored.provenance
        if hasattr(self.store, "generation"):  # the store generation the query read (servers switch between them)
            provenance["store"] = self.store.generation
        provenance["backend"] = describe_backend(self.backend)  # where the scan ran (NCS, FDR, tau, summaries: here)
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
            kernel = self._kernel_threads()  # asked of the backend once per run
            ncs_values = ref.normalise(metrics[method.name], mode=ncs_mode, **kernel)
            metrics["ncs"] = ncs_values
            if fdr:
                fdr_out = self._fdr(ncs_values, metrics[method.name], valid, method.name, sp.name, options, fdr_params, notes, ref=ref)
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
                t = level_tau(ref, "sig", ncs_values, tau_method, notes, tails=tails, metric=method.name, log_to=tau_log,
                              kernel=kernel)
                if t is not None:
                    metrics["tau"] = t
            if summaries:
                for level, (index, values) in ref.summary_plan.apply(ncs_values, **kernel).items():
                    lm = {"ncs": values}
                    if tau_log is not None:
                        t = level_tau(ref, level, values, tau_method, notes, index=index, tails=tails, metric=method.name,
                                      log_to=tau_log, kernel=kernel)
                        if t is not None:
                            lm["tau"] = t
                    levels[level] = LevelResult(level, index, lm)
        if tau_log is not None:
            finish_tau_provenance(tau_log, [v.name for v in valid], tails, method.name, notes, provenance)
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
        """NCS (S, Q) of raw connectivity scores (S, Q) with the store's groups and references
        (:meth:`ReferenceIndex.normalise <opencmap.query.reference.ReferenceIndex.normalise>`)."""
        return self.index.normalise(scores, mode=mode, **self._kernel_threads())

    @property
    def groups(self) -> tuple[np.ndarray, pd.Index]:
        """NCS group codes of the store's signatures and their labels (from the reference index)."""
        return self.index.groups

    def _kernel_threads(self) -> dict[str, int]:
        """Thread options of the NCS, summary and tau kernels, asked of the backend at call time."""
        return {"threads": self.backend.numba_threads(), **self.backend.settings.kernel_options("parallel_min")}

    @property
    def summary_plan(self) -> SummaryPlan:
        """Summary levels of the store's signatures (and the engine's PCLs), from the reference index."""
        return self.index.summary_plan

    # ------------------------------------------------------------------ steps
    def _score(
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
        """Raw outputs (S, Q) of ``method`` from the block runner (:func:`opencmap.query.runner.run_blocks`)."""
        return run_blocks(
            self.store, method, valid, options, space=space, n_features=n_features, tails=tails, block_size=block_size, progress=progress,
            backend=self.backend,
        )

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
        *,
        ref: ReferenceIndex | None = None,
    ) -> Any:
        """FDR step (:mod:`opencmap.query.fdr_null`): the ``cmap`` method on NCS against the null
        signatures, or random-query nominal p-values of the raw scores with BH."""
        from opencmap.query.fdr_null import cmap_fdr, random_query_fdr

        ref = self.index if ref is None else ref
        names = [v.name for v in valid]
        if fdr_params["fdr_method"] != "cmap":
            out = random_query_fdr(
                self.store, scores, valid, metric=metric, space=space, options=_null_options(options),
                n_random=fdr_params["fdr_null_size"], seed=fdr_params["fdr_seed"],
                pooled=fdr_params["fdr_method"] == "random_query_pooled", nulls=ref.memo("fdr_nulls", dict),
                backend=self.backend,
            )  # fmt: skip
        else:
            null = ref.null
            if not null.any():
                notes.append("fdr_q not computed: the store has no null signatures (is_null_sig / ctl_* pert types) for the cmap FDR method")
                return None
            out = cmap_fdr(ncs_values, null, names, threads=self.backend.numba_threads())
        notes.extend(out.notes)
        return out

def _nan_where_undefined(q: np.ndarray, ncs_values: np.ndarray) -> np.ndarray:
    """q-values of undefined (NaN) scores are NaN, not 1: there is no connection to assess."""
    undefined = np.isnan(ncs_values)
    if undefined.any():
        q = q.copy()
        q[undefined] = np.nan
    return q


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


# ---------------------------------------------------------------------------------- one-call API
def run_query(
    store: Store | str,
    up: Iterable[str] | Mapping[str, Iterable[str]] | None = None,
    down: Iterable[str] | Mapping[str, Iterable[str]] | None = None,
    *,
    queries: Sequence[Query] | None = None,
    name: str = "query",
    pcl: Any = None,
    backend: Backend | str | None = None,
    **options: Any,
) -> QueryResult:
    """Run one query (``up``/``down`` lists), several (dicts by name) or ``queries`` on ``store``.

    Options are those of :meth:`Engine.run` (``metric``, ``space``, ``min_genes``, ...);
    ``backend`` as :class:`Engine` (a store path with a backend of its own settings is opened
    with those settings, not shared). Repeated
    calls reuse what they can: a store given as a path is opened once per generation
    (:func:`~opencmap.query.reference.shared_store`) and its reference index is shared
    (:meth:`ReferenceIndex.of <opencmap.query.reference.ReferenceIndex.of>`).
    """
    if queries is None:
        if up is None and down is None:
            raise QueryError("give up and/or down genes, or queries=")
        queries = as_queries(up, down, name=name)
    if not isinstance(store, Store):
        store = shared_store(store) if backend is None else Store(store, settings=resolve_backend(backend).settings)
    return Engine(store, pcl=pcl, backend=backend).run(queries, **options)
