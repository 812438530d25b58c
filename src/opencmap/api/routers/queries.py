"""``/queries``: validate gene sets, and run small queries synchronously.

A synchronous query is stored as a finished job, so its results, heatmap, running sums and
downloads are served by the ``/jobs/{id}/...`` routes like a batch job's. It is answered as soon
as its result is computed; the result is saved afterwards (see :mod:`opencmap.api.jobs.worker`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from opencmap.api.deps import get_runner, get_service, get_settings
from opencmap.api.execution import QueryService
from opencmap.api.jobs import JobRunner
from opencmap.api.paging import json_value
from opencmap.api.routers.jobs import job_status
from opencmap.api.schemas import QueryRequest, SyncQueryResponse, ValidationReport
from opencmap.api.settings import Settings
from opencmap.errors import ConfigError
from opencmap.kernels.fdr import flag_names
from opencmap.query.result import QueryResult

__all__ = ["router", "top_records"]

router = APIRouter(prefix="/queries", tags=["queries"])

_TOP_LEVELS = ("pert_summary", "pcl_summary", "sig")


def top_records(result: QueryResult, level: str, n: int = 20) -> list[dict[str, Any]]:
    """``records(result.top(n, level=level))`` of the first query, built from the ``n`` rows of
    :meth:`QueryResult.top_rows` only: the same rows, columns and values (pinned by a test)
    without a pandas table per level, which cost more than the engine run on small stores."""
    lv = result.level(level)
    rows = result.top_rows(n, query=0, level=level)  # the library's selection, without a table
    index = lv.index.iloc[rows]
    columns: dict[str, list[Any]] = {"query": [result.queries[0].name] * len(rows)}
    columns.update({str(c): index[c].tolist() for c in index.columns})
    columns.update({name: m[rows, 0].tolist() for name, m in lv.metrics.items()})
    if "fdr_flag" in columns:  # the CMap FDR's side flags, by name, as in QueryResult.to_frame
        columns["fdr_flag"] = [flag_names(int(c)) for c in columns["fdr_flag"]]
    return [{c: json_value(v) for c, v in zip(columns, row, strict=True)} for row in zip(*columns.values(), strict=True)]


@router.post("/validate", response_model=ValidationReport, summary="Check gene sets: unknown genes, suggestions, sizes")
def validate(req: QueryRequest, service: Annotated[QueryService, Depends(get_service)]) -> ValidationReport:
    return ValidationReport.model_validate(service.validate(req))


@router.post("", response_model=SyncQueryResponse, summary="Run a small query now (batches: POST /jobs)")
def run_sync(
    req: QueryRequest,
    service: Annotated[QueryService, Depends(get_service)],
    runner: Annotated[JobRunner, Depends(get_runner)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> SyncQueryResponse:
    n = service.check(req)
    if n > settings.max_sync_queries:
        raise ConfigError(
            f"{n} queries exceed the synchronous limit of {settings.max_sync_queries}; "
            "submit them as a job with POST /api/v1/jobs"
        )
    # a plain ``def`` route runs in the thread pool: validation, the engine run, the save marker
    # and the top-20 tables all stay off the event loop (the server keeps answering meanwhile)
    job_id, result = runner.run_now(req.model_dump(), n_queries=n)
    top = {level: top_records(result, level) for level in _TOP_LEVELS if level in result.levels}
    job = runner.answered(job_id)  # done (its save may still be pending: served from memory meanwhile)
    assert job is not None
    return SyncQueryResponse(job=job_status(job), top=top)
