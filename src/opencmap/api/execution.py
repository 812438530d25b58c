"""Turning API requests into library queries and running them on the shared engine.

One :class:`QueryService` per server: it checks the deployment limits, builds the library's
request with :func:`~opencmap.query.request.build_request` (the builder the CLI uses: gene sets,
or store signatures), validates its queries once (:meth:`~opencmap.query.request.QueryRequest.validate`;
the batch is kept for the run of the same request) and runs it on the shared engine.

Engine runs are concurrent (the synchronous lane beside batch jobs): the API runs them in worker
threads, where the engine's kernels use their one-thread variants (the local backend launches
``prange`` kernels from the main thread only, see :mod:`opencmap.backends`). Everything the runs share that
depends on the store (NCS groups and references, summary plan, gene lookup, null mask, tau
background rows) is in the store's :class:`~opencmap.query.reference.ReferenceIndex`, whose parts
are each built once under its own lock and read-only afterwards, so runs need no lock, even on
first use. :meth:`QueryService.warm` only builds the index and compiles the kernels at start-up,
so that the first requests do not wait for them.

With a Dask scheduler (``Settings.scheduler``) batch jobs run on ``batch_engine``, an engine of the
same store whose scans go to the cluster (:class:`~opencmap.backends.DaskBackend`); synchronous
queries stay on the local engine (a cluster round trip would only add latency to a small query).
"""

from __future__ import annotations

import json
import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from opencmap.api.catalogue import Catalogue
from opencmap.api.schemas import QueryRequest
from opencmap.api.settings import Settings
from opencmap.errors import ConfigError, GeneSetError, QueryError
from opencmap.query.engine import Engine
from opencmap.query.genesets import Query, ValidatedBatch
from opencmap.query.request import QueryRequest as LibraryRequest
from opencmap.query.request import build_request
from opencmap.query.result import QueryResult

__all__ = ["QueryService", "BYTES_PER_SCORE"]

log = logging.getLogger(__name__)

#: estimated peak bytes per (signature, query) of a run: ~8 float32 metrics at the signature level,
#: float64 scratch, and the summary levels
BYTES_PER_SCORE = 64
#: validated requests kept for their run (:meth:`QueryService.check` -> :meth:`QueryService.execute`):
#: at most this many, each of at most this many queries (larger ones are validated again at run time)
_KEEP_MAX_REQUESTS = 16
_KEEP_MAX_QUERIES = 1000


class QueryService:
    """Limits, validation and execution of query requests (see the module docstring)."""

    def __init__(self, engine: Engine, catalogue: Catalogue, settings: Settings, *, batch_engine: Engine | None = None):
        self.engine = engine
        #: the engine of batch jobs (on a Dask cluster when the server has a scheduler)
        self.batch_engine = engine if batch_engine is None else batch_engine
        self.catalogue = catalogue
        self.settings = settings
        self._prepared: OrderedDict[str, tuple[LibraryRequest, ValidatedBatch]] = OrderedDict()
        self._prepared_lock = threading.Lock()

    # ------------------------------------------------------------------ start-up
    def warm(self) -> bool:
        """Build the store's reference index and compile the kernels (one tiny query per feature
        space and tail), so the first requests do not wait for them; False if that failed (runs
        are still correct, the first ones only slower)."""
        store = self.engine.store
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one-sided / no-background notes of the warm-up queries
            try:
                self.engine.index.warm()
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
                log.warning("warming the engine (reference index, kernels) failed; the first queries will be slower", exc_info=True)
                return False
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

    def request(self, req: QueryRequest) -> LibraryRequest:
        """The library request of ``req`` (:func:`~opencmap.query.request.build_request`: gene sets
        first, then signatures; names checked unique)."""
        return build_request(
            self.engine.store,
            queries=[Query(q.name, up=tuple(q.up), down=tuple(q.down)) for q in req.queries],
            sig_ids=req.sig_ids,
            n_sig_genes=req.n_genes,
            metric=req.metric,
            space=req.space,
            min_genes=req.min_genes,
            max_genes=req.max_genes,
            on_invalid=req.on_invalid,
            tau_method=req.tau_method,
            fdr_method=req.fdr_method,
            fdr_null_size=req.fdr_null_size,
            fdr_seed=req.fdr_seed,
        )

    # ------------------------------------------------------------------ validation
    def validate(self, req: QueryRequest) -> dict[str, Any]:
        """Per query: genes kept, unknown (with suggestions), out of space, and the error if any."""
        self.count(req)
        return self.request(req).validation_report(self.engine.store, self.catalogue.lookup)

    def check(self, req: QueryRequest) -> int:
        """Raise the library's error for the first invalid query (unless ``on_invalid='skip'``);
        returns the number of queries (:meth:`prepare`)."""
        return self.prepare(req)[0]

    def prepare(self, req: QueryRequest) -> tuple[int, ValidatedBatch | None]:
        """:meth:`count`, then (unless ``on_invalid='skip'``) validate the queries once, raising
        the library's error for the first invalid one; returns the count and the validated batch.

        The batch is kept for :meth:`execute` of the same request (the synchronous lane runs it at
        once; a batch job when a worker takes it), so the engine does not validate it again."""
        n = self.count(req)
        if req.on_invalid != "raise":
            return n, None
        request = self.request(req)
        batch = request.validate(self.engine.store, self.catalogue.lookup)
        self._keep(req.model_dump(), request, batch)
        return n, batch

    def _keep(self, request: dict[str, Any], built: LibraryRequest, batch: ValidatedBatch) -> None:
        """Remember a validated request for :meth:`execute` (the last few, small ones only)."""
        if len(batch.queries) > _KEEP_MAX_QUERIES:
            return
        with self._prepared_lock:
            self._prepared[_request_key(request)] = (built, batch)
            while len(self._prepared) > _KEEP_MAX_REQUESTS:
                self._prepared.popitem(last=False)

    # ------------------------------------------------------------------ execution
    def execute(self, request: dict[str, Any], progress: Callable[[int, int], None], *, batch: bool = False) -> QueryResult:
        """Run a stored request (a :class:`QueryRequest` as a dict) on the engine (``batch``: on
        :attr:`batch_engine`); the batch :meth:`check` validated is used as it is, else the engine
        validates the queries."""
        with self._prepared_lock:
            kept = self._prepared.pop(_request_key(request), None)
        engine = self.batch_engine if batch else self.engine
        if kept is not None:
            built, validated = kept
        else:
            built, validated = self.request(QueryRequest.model_validate(request)), None
        return built.run(engine, validated=validated, progress=progress)


def _request_key(request: dict[str, Any]) -> str:
    """A request dict as canonical JSON (the same request submitted and stored gives the same key)."""
    return json.dumps(request, sort_keys=True, default=str)
