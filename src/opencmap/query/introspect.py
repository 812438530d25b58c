"""Introspection: the store's own signatures as queries against every signature (cmapM introspect).

Each query signature becomes a query of its top and bottom ``n_genes`` genes (picked in the
query space, default ``lm`` if present, spec §6.6), scored against the whole store with the block
runner (:func:`opencmap.query.scoring.score_only`). :func:`signature_scores` is that step, written
once; :func:`connectivity_matrix` (all-vs-all NCS) and
:func:`~opencmap.query.background.build_background` (the tau backgrounds) both use it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from opencmap.backends import Backend, resolve_backend
from opencmap.core.gct import GCT
from opencmap.query.genesets import DEFAULT_MAX_GENES, signature_queries
from opencmap.query.methods import get_method
from opencmap.query.reference import ReferenceIndex
from opencmap.query.scoring import score_only
from opencmap.query.store import Store

__all__ = ["signature_scores", "connectivity_matrix"]

Progress = Callable[[int, int], None]


def signature_scores(
    store: Store,
    *,
    sig_ids: Sequence[str] | None = None,
    positions: np.ndarray | None = None,
    n_genes: int = 50,
    query_space: str | None = None,
    space: str | None = None,
    metric: str = "wtcs",
    min_genes: int = 1,
    max_genes: int = DEFAULT_MAX_GENES,
    index: ReferenceIndex | None = None,
    progress: Progress | None = None,
    backend: Backend | None = None,
) -> dict[str, np.ndarray]:
    """Outputs ``{name: (S, Q)}`` of the signatures ``sig_ids`` (or at ``positions``) used as
    queries of their top/bottom ``n_genes`` genes in ``query_space``, scored with ``metric`` in
    ``space`` (no post-processing); queries are named by their signature ids."""
    if positions is not None:
        queries = signature_queries(store, positions=positions, n_genes=n_genes, space=query_space)
    else:
        queries = signature_queries(store, sig_ids, n_genes=n_genes, space=query_space)
    return score_only(
        store, queries, metric=metric, space=space, min_genes=min_genes, max_genes=max_genes, index=index, progress=progress,
        backend=backend,
    )


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
    backend: Backend | None = None,
) -> GCT:
    """All-vs-all connectivity (introspection): signatures as queries against signatures.

    Each signature of ``sig_ids`` (default: all) becomes a query of its top/bottom ``n_genes``
    genes (picked in ``query_space``, default ``lm`` if present, spec §6.6); it is scored against
    the store, normalised (NCS over the whole store) and restricted to ``references`` (default:
    the same signatures). With ``symmetric`` and identical query/reference sets, the matrix is
    averaged with its transpose (cmapM introspect). Returns a GCT references x queries.
    ``backend``: where the scoring runs (:mod:`opencmap.backends`; default: this process).
    """
    backend = resolve_backend(backend)
    st = store if isinstance(store, Store) else Store(store, settings=backend.settings)
    ids = list(st.sig_ids) if sig_ids is None else [str(s) for s in sig_ids]
    refs = ids if references is None else [str(s) for s in references]
    method = get_method(metric)
    index = ReferenceIndex.of(st)
    scores = signature_scores(
        st, sig_ids=ids, n_genes=n_genes, query_space=query_space, metric=method.name, min_genes=min_genes,
        max_genes=max(n_genes, DEFAULT_MAX_GENES), index=index, progress=progress, backend=backend,
    )  # fmt: skip
    values = scores[method.name]
    if normalise and method.connectivity:
        values = index.normalise(values, threads=backend.numba_threads(), **backend.settings.kernel_options("parallel_min"))
    values = values[st.sig_positions(refs)]
    if symmetric and refs == ids:
        values = 0.5 * (values + values.T)
    info = st.sig_info.set_index("sig_id")
    return GCT(values, rids=refs, cids=ids, row_meta=info.loc[refs], col_meta=info.loc[ids])
