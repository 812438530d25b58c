"""Turning API requests into library queries and running them on the shared engine.

One :class:`QueryService` per server: it checks the deployment limits, builds
:class:`~opencmap.query.genesets.Query` objects (gene sets, or store signatures via
:func:`~opencmap.query.genesets.signature_queries`), validates them with the library's
:func:`~opencmap.query.genesets.validate_query`, and runs :meth:`Engine.run`.

Engine runs are concurrent (the synchronous lane beside batch jobs): the API runs them in worker
threads, where the engine's kernels use their one-thread variants (``prange`` kernels are launched
from the main thread only, see :mod:`opencmap.kernels.threads`). The engine's lazy caches (NCS
groups and references, summary plan, gene lookup, null mask, tau backgrounds) are not built for
concurrent *first* use, so :meth:`QueryService.warm` fills them at start-up with one tiny query per
feature space and tail; until it has succeeded, runs are serialised by a lock.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Callable
from typing import Any

from opencmap.api.catalogue import Catalogue
from opencmap.api.schemas import QueryRequest
from opencmap.api.settings import Settings
from opencmap.errors import ConfigError, GeneSetError, QueryError
from opencmap.query.engine import Engine
from opencmap.query.genesets import Query, restrict_query, signature_queries, validate_query
from opencmap.query.result import QueryResult

__all__ = ["QueryService", "BYTES_PER_SCORE"]

log = logging.getLogger(__name__)

#: estimated peak bytes per (signature, query) of a run: ~8 float32 metrics at the signature level,
#: float64 scratch, and the summary levels
BYTES_PER_SCORE = 64


class QueryService:
    """Limits, validation and execution of query requests (see the module docstring)."""

    def __init__(self, engine: Engine, catalogue: Catalogue, settings: Settings):
        self.engine = engine
        self.catalogue = catalogue
        self.settings = settings
        self._lock = threading.Lock()
        self._warm = threading.Event()

    # ------------------------------------------------------------------ start-up
    def warm(self) -> bool:
        """Fill the engine's lazy caches (one tiny query per feature space and tail), so later runs
        can share the engine concurrently; False (runs stay serialised) if that failed."""
        store = self.engine.store
        with self._lock, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one-sided / no-background notes of the warm-up queries
            try:
                for name in sorted(store.spaces):
                    genes = [str(g) for g in store.space(name).gene_ids[:20]]
                    if len(genes) < 20:
                        continue
                    up, down = tuple(genes[:10]), tuple(genes[10:20])
                    for q in (Query("warm", up=up, down=down), Query("warm", up=up), Query("warm", down=down)):
                        # the cmap FDR fills the null mask; random-query nulls are per query size,
                        # built on first use: building them for these sizes costs minutes at 473,647
                        # signatures (3 x 1,000 random queries) and no real query uses them
                        self.engine.run([q], space=name, min_genes=1, fdr_method="cmap")
            except Exception:
                log.warning("warming the engine's caches failed; queries run one at a time", exc_info=True)
                return False
        self._warm.set()
        return True

    def estimate_bytes(self, request: dict[str, Any]) -> int:
        """Peak memory of running ``request`` (bytes): every metric of every level for every query,
        about :data:`BYTES_PER_SCORE` bytes per signature and query."""
        n = len(request.get("queries") or ()) + len(request.get("sig_ids") or ())
        return int(n * self.engine.store.n_signatures * BYTES_PER_SCORE)

    # ------------------------------------------------------------------ requests -> queries
    def count(self, req: QueryRequest) -> int:
        """Number of queries of ``req``; raises for none or more than the deployment allows."""
        n = len(req.queries) + len(req.sig_ids)
        if n == 0:
            raise QueryError("the request has no queries: give 'queries' (up/down gene sets) or 'sig_ids'")
        if n > self.settings.max_sets_per_job:
            raise ConfigError(f"{n} queries exceed this server's limit of {self.settings.max_sets_per_job} per job; split them")
        limit = self.settings.max_genes_per_set
        for q in req.queries:
            for side, genes in (("up", q.up), ("down", q.down)):
                if len(genes) > limit:
                    raise GeneSetError(
                        f"query {q.name!r}: {len(genes)} {side} genes exceed this server's limit of {limit} per set"
                    )
            if not q.up and not q.down:
                raise GeneSetError(f"query {q.name!r} has neither up nor down genes; give at least one gene set")
        if req.min_genes > req.max_genes:
            raise ConfigError(f"min_genes ({req.min_genes}) is larger than max_genes ({req.max_genes})")
        return n

    def queries(self, req: QueryRequest) -> list[Query]:
        """Library queries of ``req`` (gene sets first, then signatures)."""
        out = [Query(q.name, up=tuple(q.up), down=tuple(q.down)) for q in req.queries]
        if req.sig_ids:
            out += signature_queries(self.engine.store, req.sig_ids, n_genes=req.n_genes)
        names = [q.name for q in out]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})[:5]
            raise QueryError(f"query names must be unique; repeated: {dup}")
        return out

    # ------------------------------------------------------------------ validation
    def validate(self, req: QueryRequest) -> dict[str, Any]:
        """Per query: genes kept, unknown (with suggestions), out of space, and the error if any."""
        self.count(req)
        space = self.engine.store.space(req.space)
        report = []
        for q in self.queries(req):
            try:
                v = validate_query(q, space, self.catalogue.lookup, min_genes=req.min_genes, max_genes=req.max_genes)
                entry = {"name": q.name, "valid": True, "message": None}
            except GeneSetError as exc:
                v = restrict_query(q, space, self.catalogue.lookup)  # still report what was kept / unknown
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

    def check(self, req: QueryRequest) -> int:
        """Raise the library's error for the first invalid query (unless ``on_invalid='skip'``)."""
        n = self.count(req)
        if req.on_invalid == "raise":
            space = self.engine.store.space(req.space)
            for q in self.queries(req):
                validate_query(q, space, self.catalogue.lookup, min_genes=req.min_genes, max_genes=req.max_genes)
        return n

    # ------------------------------------------------------------------ execution
    def execute(self, request: dict[str, Any], progress: Callable[[int, int], None]) -> QueryResult:
        """Run a stored request (a :class:`QueryRequest` as a dict) on the engine."""
        req = QueryRequest.model_validate(request)
        queries = self.queries(req)
        with contextlib.nullcontext() if self._warm.is_set() else self._lock:
            return self.engine.run(
                queries,
                metric=req.metric,
                space=req.space,
                min_genes=req.min_genes,
                max_genes=req.max_genes,
                on_invalid=req.on_invalid,
                tau_method=req.tau_method,
                fdr_method=req.fdr_method,
                fdr_null_size=req.fdr_null_size,
                fdr_seed=req.fdr_seed,
                progress=progress,
            )
