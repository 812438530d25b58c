"""Connectivity queries over a reference store (whose files are :mod:`opencmap.io.store`): one module
per method, a shared engine, NCS/tau/summaries.

Modules: ``reference`` (:class:`~opencmap.query.reference.ReferenceIndex`, everything derived
from a store once and shared), ``methods`` (the registry, one module per method and its access
pattern), ``runner`` (the one block runner), ``scoring`` (validate, tails, score), ``engine``
(NCS, FDR, tau, summaries), ``tau`` (tau lookup), ``introspect`` (signatures as queries:
connectivity matrix, background scores), ``background`` (tau backgrounds), ``fdr_null``,
``summaries``, ``pcl``, ``genesets``, ``result``, ``store``.

>>> from opencmap.query import build_store, build_background, run_query   # doctest: +SKIP
>>> store = build_store("ref", "level5.gctx", sig_info="sig_info.txt")     # doctest: +SKIP
>>> build_background(store)                                                # doctest: +SKIP
>>> result = run_query(store, up=[...], down=[...])                        # doctest: +SKIP
>>> result.top(20, level="pert_summary")                                   # doctest: +SKIP

The CLI and the API assemble their runs with one builder, :func:`build_request`
(:mod:`opencmap.query.request`): queries from gene lists, GMT/GRP files, vectors, store
signatures and DE tables, validated once, run on an :class:`Engine`.
"""

from opencmap.query.background import Background, build_background, load_background
from opencmap.query.de import DEQueries, DESelection, queries_from_de, queries_from_rank_genes_groups, queries_from_rnk
from opencmap.query.engine import Engine, connectivity_matrix, run_query
from opencmap.query.fdr_null import FDR_METHODS, FDRWarning, build_fdr_nulls
from opencmap.query.genesets import (
    Query,
    ValidatedBatch,
    ValidatedQuery,
    as_queries,
    queries_from_files,
    queries_from_gct,
    queries_from_gmt,
    query_from_grp,
    signature_queries,
    validate_queries,
    validate_query,
    vector_queries,
)
from opencmap.query.methods import METHOD_NAMES, Method, get_method, method_names
from opencmap.query.release_store import BuildFilters, build_release_store, plan_release_store
from opencmap.query.request import QueryRequest, build_request
from opencmap.query.result import LevelResult, QueryResult
from opencmap.query.store import FeatureSpace, Store, append_store, build_store, open_store
from opencmap.query.summaries import SummaryPlan, summarise

__all__ = [
    "Store",
    "FeatureSpace",
    "build_store",
    "append_store",
    "open_store",
    "build_release_store",
    "plan_release_store",
    "BuildFilters",
    "Background",
    "build_background",
    "load_background",
    "Engine",
    "run_query",
    "connectivity_matrix",
    "FDR_METHODS",
    "FDRWarning",
    "build_fdr_nulls",
    "Query",
    "ValidatedQuery",
    "validate_query",
    "ValidatedBatch",
    "validate_queries",
    "QueryRequest",
    "build_request",
    "as_queries",
    "queries_from_files",
    "queries_from_gmt",
    "query_from_grp",
    "queries_from_gct",
    "signature_queries",
    "vector_queries",
    "queries_from_de",
    "queries_from_rank_genes_groups",
    "queries_from_rnk",
    "DEQueries",
    "DESelection",
    "Method",
    "METHOD_NAMES",
    "get_method",
    "method_names",
    "QueryResult",
    "LevelResult",
    "SummaryPlan",
    "summarise",
]
