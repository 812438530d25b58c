"""``/queries``: validate gene sets, and run small queries synchronously.

A synchronous query is stored as a finished job, so its results, heatmap, running sums and
downloads are served by the ``/jobs/{id}/...`` routes like a batch job's. It is answered as soon
as its result is computed; the result is saved afterwards (see :mod:`opencmap.api.jobs.worker`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from opencmap.api.deps import get_runner, get_service, get_settings
from opencmap.api.execution import QueryService
from opencmap.api.jobs import JobRunner
from opencmap.api.paging import records
from opencmap.api.routers.jobs import job_status
from opencmap.api.schemas import QueryRequest, SyncQueryResponse, ValidationReport
from opencmap.api.settings import Settings
from opencmap.errors import ConfigError

__all__ = ["router"]

router = APIRouter(prefix="/queries", tags=["queries"])

_TOP_LEVELS = ("pert_summary", "pcl_summary", "sig")


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
    # a plain ``def`` route runs in the thread pool: validation, the engine run, the describe.json
    # and the top-20 tables all stay off the event loop (the server keeps answering meanwhile)
    job_id, result = runner.run_now(req.model_dump(), n_queries=n)
    top = {level: records(result.top(20, level=level)) for level in _TOP_LEVELS if level in result.levels}
    job = runner.answered(job_id)  # done (its save may still be pending: served from memory meanwhile)
    assert job is not None
    return SyncQueryResponse(job=job_status(job), top=top)
