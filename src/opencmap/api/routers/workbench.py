"""``/jobs`` routes of the web workbench: delete / cancel a job, an item's scores, download-all, query export.

Kept apart from :mod:`opencmap.api.routers.jobs` (same ``/jobs`` prefix): read-only views of a
finished result plus the two job actions the job history needs.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, PlainTextResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from opencmap.api.deps import get_runner
from opencmap.api.jobs import JobRunner
from opencmap.api.paging import records
from opencmap.api.routers.jobs import DOWNLOAD_FORMATS, JobId, QueryName, _job, _result, job_status
from opencmap.api.schemas import JobStatus
from opencmap.errors import IdNotFoundError, QueryError
from opencmap.io.result_archive import write_result_zip
from opencmap.query.result import QueryResult

__all__ = ["router"]

router = APIRouter(prefix="/jobs", tags=["jobs"])

Id = Annotated[str, Query(min_length=1, max_length=200)]


@router.delete("/{job_id}", status_code=204, summary="Delete a job and its stored result")
def delete_job(job_id: JobId, runner: Annotated[JobRunner, Depends(get_runner)]) -> Response:
    job = _job(runner, job_id)
    if job["status"] in ("queued", "running"):
        runner.cancel(job_id)  # a running worker stops at its next progress report
    runner.db.delete(job_id)
    runner.forget(job_id)
    return Response(status_code=204)


@router.post("/{job_id}/cancel", response_model=JobStatus, summary="Cancel a queued or running batch job")
def cancel_job(job_id: JobId, runner: Annotated[JobRunner, Depends(get_runner)]) -> JobStatus:
    job = _job(runner, job_id)
    if job["status"] not in ("queued", "running"):
        raise QueryError(f"job {job_id} is {job['status']}: only queued or running jobs can be cancelled")
    runner.cancel(job_id)
    return job_status(_job(runner, job_id))


def _rows(result: QueryResult, level: str, query: str, column: str, value: str) -> list[dict[str, Any]]:
    if level not in result.levels:
        return []
    frame = result.to_frame(level, query=query)
    if column not in frame.columns:
        return []
    return records(frame[frame[column].astype(str).to_numpy() == value])


@router.get("/{job_id}/scores", summary="Scores of one signature, perturbagen or PCL for one query")
def scores(
    job_id: JobId,
    runner: Annotated[JobRunner, Depends(get_runner)],
    kind: Annotated[Literal["sig", "pert", "pcl"], Query(description="sig, pert or pcl")],
    id: Id,
    query: QueryName = None,
) -> dict[str, Any]:
    """Every row of the result about one item: a signature's ``sig`` row; a perturbagen's
    signatures, cell lines and summary; a PCL's cell lines and summary."""
    result = _result(runner, job_id)
    name = result.query_name(query)
    if kind == "sig":
        out = {"sig": _rows(result, "sig", name, "sig_id", id)}
    elif kind == "pert":
        out = {
            "sig": _rows(result, "sig", name, "pert_id", id),
            "pert_cell": _rows(result, "pert_cell", name, "pert_id", id),
            "pert_summary": _rows(result, "pert_summary", name, "id", id),
        }
    else:
        out = {"pcl_cell": _rows(result, "pcl_cell", name, "pcl", id), "pcl_summary": _rows(result, "pcl_summary", name, "id", id)}
    if not any(out.values()):
        raise IdNotFoundError(f"{kind} {id!r} has no scores in job {job_id} (query {name!r})")
    return {"job": job_id, "query": name, "kind": kind, "id": id, "method": result.method, **out}


@router.get("/{job_id}/download-all", summary="Every file of a finished job as one ZIP archive", response_class=FileResponse)
async def download_all(job_id: JobId, runner: Annotated[JobRunner, Depends(get_runner)]) -> FileResponse:
    result = _result(runner, job_id)
    tmp = Path(tempfile.mkdtemp(prefix="opencmap-archive-"))
    archive = tmp / "all.zip"
    try:  # the files of GET /downloads, under the same names (the layout of opencmap.io.result_archive)
        await run_in_threadpool(write_result_zip, result, archive, formats=DOWNLOAD_FORMATS)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FileResponse(
        archive, media_type="application/zip", filename=f"opencmap-{job_id[:8]}.zip",
        background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True),
    )  # fmt: skip


@router.get("/{job_id}/export", summary="The genes a query used, as GMT (up and down sets) or GRP (one side)", response_class=PlainTextResponse)
def export(
    job_id: JobId,
    runner: Annotated[JobRunner, Depends(get_runner)],
    format: Annotated[Literal["gmt", "grp"], Query(description="gmt: NAME_UP and NAME_DN lines; grp: one side")] = "gmt",
    side: Annotated[Literal["up", "down"], Query(description="Side exported as GRP.")] = "up",
    query: QueryName = None,
) -> PlainTextResponse:
    """Gene ids the query was run with (after mapping; unknown and dropped genes are not in it)."""
    result = _result(runner, job_id)
    name = result.query_name(query)
    q = result.queries[result.query_names.index(name)]
    stem = "".join(c if c.isalnum() or c in "_.-" else "_" for c in name)
    if format == "gmt":
        lines = [
            "\t".join([f"{name}_UP", "genes used by opencmap", *q.up_genes]),
            "\t".join([f"{name}_DN", "genes used by opencmap", *q.down_genes]),
        ]
        filename, text = f"{stem}.gmt", "\n".join(line for line, genes in zip(lines, (q.up_genes, q.down_genes), strict=True) if genes) + "\n"
    else:
        genes = q.up_genes if side == "up" else q.down_genes
        filename = f"{stem}_{'up' if side == 'up' else 'dn'}.grp"
        text = f"# {name} {side} genes used by opencmap\n" + "".join(f"{g}\n" for g in genes)
    return PlainTextResponse(text, media_type="text/plain", headers={"Content-Disposition": f'attachment; filename="{filename}"'})
