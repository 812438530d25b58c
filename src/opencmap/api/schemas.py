"""Request and response models of the REST API (pydantic; they make the OpenAPI schema).

Static bounds here keep every request finite; the deployment limits of
:class:`~opencmap.api.settings.Settings` (genes per set, sets per job) are checked on top.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from opencmap.api.jobs import JobState
from opencmap.query.methods import method_names

__all__ = [
    "GeneSetQuery",
    "QueryRequest",
    "ValidationReport",
    "QueryValidation",
    "Page",
    "JobStatus",
    "JobList",
    "ResultPage",
    "ErrorBody",
    "SyncQueryResponse",
    "Heatmap",
    "RunningSumOut",
    "GeneSetsOut",
    "UploadedQueries",
]

#: a gene token: an Entrez id or a symbol
Gene = Field(min_length=1, max_length=64)
QueryName = Field("query", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:+\- ]+$")

#: absolute caps; deployments set lower limits in Settings
_MAX_GENES = 100_000
_MAX_SETS = 100_000

#: the gene-set methods of the registry (:func:`opencmap.query.methods.method_names`), in its order
GeneSetMetric = Literal[method_names("geneset")]  # type: ignore[valid-type]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: a gene as given (id or symbol): no tabs or line breaks, which no table of the result could hold
Gene = Annotated[str, Field(max_length=200, pattern=r"^[^\t\r\n]*$")]


class GeneSetQuery(_Strict):
    """One query: up and/or down genes (Entrez ids or symbols, any case)."""

    name: str = QueryName
    up: list[Gene] = Field(default_factory=list, max_length=_MAX_GENES)
    down: list[Gene] = Field(default_factory=list, max_length=_MAX_GENES)


class QueryRequest(_Strict):
    """Queries to run: gene sets and/or store signatures (their top/bottom ``n_genes`` genes)."""

    queries: list[GeneSetQuery] = Field(default_factory=list, max_length=_MAX_SETS)
    sig_ids: list[str] = Field(default_factory=list, max_length=_MAX_SETS)
    n_genes: int = Field(50, ge=1, le=1000, description="Genes per direction for signature queries.")
    metric: GeneSetMetric = "wtcs"
    space: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$", description="Feature space.")
    min_genes: int = Field(10, ge=1, le=10_000)
    max_genes: int = Field(150, ge=1, le=10_000)
    tau_method: Literal["exact", "cmap"] = "exact"
    fdr_method: Literal["random_query_pooled", "random_query", "cmap"] = Field(
        "random_query_pooled",
        description="FDR q-values: random-query nulls with Benjamini-Hochberg (pooled tail / per signature), or cmapM's "
        "method against the null signatures (fdr_flag marks the sides where it says nothing).",
    )
    fdr_null_size: int | None = Field(None, ge=10, le=100_000, description="Random queries per query size (random-query FDR; default 1000).")
    fdr_seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Seed of the random queries (default 0).")
    on_invalid: Literal["raise", "skip"] = "raise"


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"code", "message", "details"}}``."""

    error: dict[str, Any]


class QueryValidation(BaseModel):
    """Validation of one query against the store's feature space."""

    name: str
    valid: bool
    message: str | None = None
    up: list[str]
    down: list[str]
    unknown: list[str]
    dropped: list[str]
    suggestions: dict[str, list[str]]
    mapped: dict[str, dict[str, list[str]]] = {}  # side -> token -> [gene_id, symbol, via]
    ambiguous: dict[str, dict[str, list[list[str]]]] = {}  # side -> token -> [[entrez_id, symbol], ...]
    reasons: dict[str, str] = {}  # token -> why it was mapped / not used
    notes: list[str] = []


class ValidationReport(BaseModel):
    space: str
    queries: list[QueryValidation]


class Page(BaseModel):
    """A page of rows of a table."""

    total: int
    offset: int
    limit: int
    items: list[dict[str, Any]]


class JobStatus(BaseModel):
    """A job. Once done: ``notes`` says what the result used, as short readable lines (method,
    parameters, per query the genes used, unknown, dropped and mapped, and every note of the
    engine; the same lines as the CLI's notes block), and ``describe`` holds the same facts as
    structured data (``QueryResult.describe()``)."""

    id: str
    status: JobState
    mode: Literal["sync", "batch"]
    progress: float
    created: float
    started: float | None = None
    finished: float | None = None
    attempts: int
    n_queries: int
    error: str | None = None
    request: dict[str, Any]
    method: str | None = None
    space: str | None = None
    notes: list[str] = Field(default_factory=list, description="What the result used, one readable line each.")
    params: dict[str, Any] = Field(default_factory=dict, description="What the result used: metric, space, tau method, method options.")
    fdr: dict[str, Any] = Field(default_factory=dict, description="FDR method and its null per query (and side, cmap method).")
    queries: list[dict[str, Any]] = Field(default_factory=list)
    levels: list[str] = Field(default_factory=list)
    describe: dict[str, Any] = Field(default_factory=dict, description="The result's provenance as structured data.")


class JobList(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[JobStatus]


class ResultPage(Page):
    level: str
    query: str
    metrics: list[str]
    sort: str
    order: Literal["asc", "desc", "abs"]
    notes: list[str] = Field(default_factory=list, description="What the result used (as the job's notes).")


class SyncQueryResponse(BaseModel):
    job: JobStatus
    top: dict[str, list[dict[str, Any]]]


class Heatmap(BaseModel):
    query: str
    metric: str
    rows: list[str]
    row_labels: list[str]
    columns: list[str]
    values: list[list[float | None]]


class RunningSumOut(BaseModel):
    sig_id: str
    query: str
    space: str
    n_features: int
    curves: dict[str, dict[str, Any]]


class GeneSetsOut(BaseModel):
    """Gene sets read from an uploaded GMT / GRP file."""

    format: Literal["gmt", "grp"]
    sets: list[dict[str, Any]]


class UploadedQueries(BaseModel):
    """Queries read from an uploaded up file and/or down file, paired as the CLI pairs them."""

    format: Literal["gmt", "grp"]
    files: dict[str, str | None] = Field(description="The uploaded file name of each side ('up', 'down').")
    queries: list[GeneSetQuery]
    notes: list[str] = Field(default_factory=list, description="Names changed to valid query names.")
