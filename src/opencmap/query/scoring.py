"""Scoring: validate queries, pick each query's tail, and score them with the block runner.

What every caller of a method shares before any post-processing: the query engine
(:class:`~opencmap.query.engine.Engine`, which then applies NCS, FDR, tau and summaries),
introspection (:mod:`opencmap.query.introspect`: signatures as queries, for the connectivity
matrix and the tau backgrounds) and the random-query FDR nulls (:mod:`opencmap.query.fdr_null`).
:func:`score_queries` validates the queries against the store's gene lookup (from its
:class:`~opencmap.query.reference.ReferenceIndex`), notes one-sided and undefined scores, runs
:func:`~opencmap.query.runner.run_blocks` and the method's ``finalize``; :func:`score_only` is the
same for a list of queries in one call, returning the signature-level outputs.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from opencmap.backends import Backend
from opencmap.errors import ConfigError, OneSidedQueryWarning, QueryError, UndefinedScoreWarning
from opencmap.query.genesets import DEFAULT_MAX_GENES, DEFAULT_MIN_GENES, GeneLookup, Query, ValidatedBatch, ValidatedQuery, check_unique_names
from opencmap.query.genesets import validate_queries as validate_batch
from opencmap.query.methods import Method, get_method
from opencmap.query.reference import ReferenceIndex
from opencmap.query.runner import DEFAULT_BLOCK_SIZE, run_blocks
from opencmap.query.store import Store

__all__ = ["Scored", "score_queries", "score_only", "check_names", "validate_queries", "query_tails"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
#: ``runner(valid, method, options, space, n_features, block_size, progress, *, tails)`` -> raw outputs
Runner = Callable[..., dict[str, np.ndarray]]


@dataclass
class Scored:
    """Scores of one batch: the valid queries, their tails, the options used (``es_tail`` as
    used: one tail or ``per query``), the outputs ``{name: (S, Q)}`` (the method's score under
    its name), notes and per-query provenance."""

    method: Method
    valid: list[ValidatedQuery]
    tails: list[str | None]
    options: dict[str, Any]
    metrics: dict[str, np.ndarray]
    notes: list[str]
    provenance: dict[str, Any]


def check_names(qlist: Sequence[Query] | ValidatedBatch) -> None:
    """Refuse an empty batch and repeated query names (:class:`QueryError`)."""
    if isinstance(qlist, ValidatedBatch):
        check_unique_names(qlist.queries)
        return
    if not qlist:
        raise QueryError("no queries given")
    check_unique_names(qlist)


def score_queries(
    store: Store,
    lookup: GeneLookup,
    qlist: Sequence[Query] | ValidatedBatch,
    method: Method,
    options: dict[str, Any],
    sp: Any,
    *,
    explicit_tail: str | None = None,
    min_genes: int = DEFAULT_MIN_GENES,
    max_genes: int = DEFAULT_MAX_GENES,
    on_invalid: str = "raise",
    block_size: int = DEFAULT_BLOCK_SIZE,
    progress: Progress | None = None,
    runner: Runner | None = None,
    backend: Backend | None = None,
) -> Scored:
    """Validate ``qlist`` in feature space ``sp`` and score it with ``method`` (``options`` filled
    by :meth:`Method.options`; ``explicit_tail`` the ``es_tail`` the caller gave, if any).
    ``runner`` replaces :func:`~opencmap.query.runner.run_blocks` on ``store`` (same arguments
    as :meth:`Engine._score <opencmap.query.engine.Engine._score>`)."""
    notes: list[str] = []
    valid = validate_queries(qlist, method, sp, lookup, min_genes=min_genes, max_genes=max_genes, on_invalid=on_invalid, notes=notes)
    tails = query_tails(valid, method, explicit_tail)
    if "es_tail" in options:
        # what was used, not the default: one tail for the batch, else "per query"
        options["es_tail"] = tails[0] if len(set(tails)) == 1 else "per query"
    provenance: dict[str, Any] = {"queries": [_tail_provenance(t, method.name) for t in tails]}
    _note_one_sided(valid, tails, explicit_tail, notes)
    if runner is None:
        raw = run_blocks(
            store, method, valid, options, space=sp.name, n_features=sp.n_features, tails=tails, block_size=block_size, progress=progress,
            backend=backend,
        )
    else:
        raw = runner(valid, method, options, sp.name, sp.n_features, block_size, progress, tails=tails)
    if method.finalize is not None:
        raw = method.finalize(raw, **options)
    metrics: dict[str, np.ndarray] = {method.name: raw.pop("score"), **raw}
    if method.connectivity:
        _note_undefined(metrics[method.name], valid, method.name, notes, provenance)
    return Scored(method, valid, tails, options, metrics, notes, provenance)


def score_only(
    store: Store,
    queries: Sequence[Query],
    *,
    metric: str = "wtcs",
    space: str | None = None,
    min_genes: int = DEFAULT_MIN_GENES,
    max_genes: int = DEFAULT_MAX_GENES,
    index: ReferenceIndex | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    progress: Progress | None = None,
    backend: Backend | None = None,
    **method_options: Any,
) -> dict[str, np.ndarray]:
    """The signature-level outputs ``{name: (S, Q)}`` of ``queries`` scored with ``metric``, no
    post-processing (as ``Engine.run(..., ncs=False, fdr=False, tau=False, summaries=False)``).
    ``index`` (default: the store's shared one) gives the gene lookup."""
    method = get_method(metric)
    explicit_tail = method_options.get("es_tail")
    options = method.options(method_options)
    qlist = list(queries)
    check_names(qlist)
    lookup = (index if index is not None else ReferenceIndex.of(store)).lookup
    scored = score_queries(
        store, lookup, qlist, method, options, store.space(space), explicit_tail=explicit_tail,
        min_genes=min_genes, max_genes=max_genes, block_size=block_size, progress=progress, backend=backend,
    )  # fmt: skip
    return scored.metrics


def validate_queries(
    qlist: Sequence[Query] | ValidatedBatch, method: Method, sp: Any, lookup: GeneLookup, *, min_genes: int, max_genes: int,
    on_invalid: str, notes: list[str],
) -> list[ValidatedQuery]:
    """Validate every query (:func:`opencmap.query.genesets.validate_queries`), or take a batch
    validated before for the same space and settings (:class:`~opencmap.query.genesets.ValidatedBatch`);
    gene mappings, ambiguous, unknown and dropped genes and skipped queries are warned of
    (:class:`~opencmap.errors.GeneIdentityWarning` categories) and appended to ``notes``."""
    if isinstance(qlist, ValidatedBatch):
        batch = qlist
        if not batch.matches(sp, min_genes=min_genes, max_genes=max_genes, on_invalid=on_invalid, metric_kind=method.kind):
            raise ConfigError(
                f"the queries were validated for space {batch.space!r}, min_genes={batch.min_genes}, "
                f"max_genes={batch.max_genes}, on_invalid={batch.on_invalid!r} and {batch.metric_kind} metrics; "
                f"this run uses space {sp.name!r}, min_genes={min_genes}, max_genes={max_genes}, "
                f"on_invalid={on_invalid!r} and metric {method.name!r}: validate them again or pass the queries"
            )
    else:
        batch = validate_batch(qlist, sp, lookup, metric=method.name, min_genes=min_genes, max_genes=max_genes, on_invalid=on_invalid)
    batch.emit(stacklevel=5)
    for v in batch.queries:
        if v.unknown or v.dropped:
            log.info("query %s: %d unknown and %d out-of-space genes dropped", v.name, len(v.unknown), len(v.dropped))
    notes.extend(batch.notes)
    if not batch.queries:
        raise QueryError("no valid query left to run")
    return list(batch.queries)


def query_tails(valid: Sequence[ValidatedQuery], method: Method, explicit: str | None) -> list[str | None]:
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


def _fused(metric: str) -> bool:
    """Whether ``metric`` is scored by a fused set walk of ES (WTCS, CS)."""
    return get_method(metric).access == "fused_sets"


_TAIL_SCORE = {"both": "wtcs: (ES_up - ES_dn)/2, 0 if same sign", "up": "ES_up", "down": "-ES_dn"}


def _tail_provenance(tail: str | None, metric: str) -> dict[str, Any]:
    if tail is None:
        return {}
    score = _TAIL_SCORE[tail] if _fused(metric) else None
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
        warnings.warn(note, OneSidedQueryWarning, stacklevel=4)


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
    why = " (every set gene of those signatures has weight 0, or no set gene is present), as cmapM" if _fused(metric) else ""
    note = f"{metric} is undefined (NaN) for some signatures ({shown}){why}; NCS, tau, FDR and summaries skip them"
    notes.append(note)
    warnings.warn(note, UndefinedScoreWarning, stacklevel=4)


