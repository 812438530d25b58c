"""``/jobs``: submit batches, follow their progress, and read results, plots and downloads."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Path as PathParam, Query
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from opencmap.api.catalogue import Catalogue
from opencmap.api.deps import get_catalogue, get_engine, get_runner, get_service
from opencmap.api.execution import QueryService
from opencmap.api.jobs import JobRunner, JobState
from opencmap.api.paging import json_value, page_frame, records
from opencmap.api.routers.params import Text
from opencmap.api.schemas import Heatmap, JobList, JobStatus, QueryRequest, ResultPage, RunningSumOut
from opencmap.errors import IdNotFoundError, QueryError
from opencmap.io.result_archive import parse_file_name, result_files
from opencmap.query.engine import Engine
from opencmap.query.result import LEVELS, QueryResult

__all__ = ["router", "job_status", "without_controls"]

router = APIRouter(prefix="/jobs", tags=["jobs"])

JobId = Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$", description="Job id.")]
Level = Literal[LEVELS]  # the result levels of core.schema (Literal flattens the tuple)
QueryName = Annotated[str | None, Query(max_length=100, description="Query name (default: the first query).")]
Metric = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_]+$")]
#: formats of the downloads (and of download-all): the layout of :mod:`opencmap.io.result_archive`
DOWNLOAD_FORMATS = ("tsv", "gctx")


def job_status(job: dict[str, Any]) -> JobStatus:
    """The API view of a job row (``notes`` rendered from the stored ``describe()`` data)."""
    from opencmap.query.notes import result_notes

    info = job.get("info") or {}
    return JobStatus(
        id=job["id"],
        status=job["status"],
        mode=job["mode"],
        progress=float(job["progress"]),
        created=job["created"],
        started=job["started"],
        finished=job["finished"],
        attempts=job["attempts"],
        n_queries=job["n_queries"],
        error=job["error"],
        request=job["request"],
        method=info.get("method"),
        space=info.get("space"),
        notes=result_notes(info) if info else [],
        params=info.get("params", {}),
        fdr=info.get("fdr", {}),
        queries=info.get("queries", []),
        levels=info.get("levels", []),
        describe=info,
    )


def _job(runner: JobRunner, job_id: str) -> dict[str, Any]:
    job = runner.job(job_id)  # waits for a pending save of a synchronous result: done or failed
    if job is None and runner.db.deleted(job_id):  # its row was deleted by retention: gone, not unknown
        raise HTTPException(410, f"job {job_id} was deleted by the server's retention policy (its result expired); resubmit the query")
    if job is None:
        raise IdNotFoundError(f"no job {job_id!r}; list jobs with GET /api/v1/jobs")
    return job


def _result(runner: JobRunner, job_id: str) -> QueryResult:
    pending = runner.pending(job_id)  # a synchronous result answered, not yet saved: complete in memory
    if pending is not None:
        return pending
    job = _job(runner, job_id)
    if job["status"] == "expired":  # 410 Gone: the job is known, its result was deleted (retention)
        raise HTTPException(410, f"job {job_id}: {job['error']}")
    if job["status"] != "done":
        raise QueryError(f"job {job_id} is {job['status']}" + (f": {job['error']}" if job["error"] else "; wait until it is done"))
    return runner.result(job_id)


# ---------------------------------------------------------------------------------- jobs
@router.post("", response_model=JobStatus, status_code=202, summary="Submit a batch of queries as a job")
def submit(
    req: QueryRequest,
    service: Annotated[QueryService, Depends(get_service)],
    runner: Annotated[JobRunner, Depends(get_runner)],
) -> JobStatus:
    n = service.check(req)
    job_id = runner.submit(req.model_dump(), n_queries=n)
    return job_status(_job(runner, job_id))


@router.get("", response_model=JobList, summary="Job history, newest first")
def list_jobs(
    runner: Annotated[JobRunner, Depends(get_runner)],
    status: Annotated[JobState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> JobList:
    runner.flush(timeout=60)  # synchronous results being saved are listed done (or failed), not running
    total, rows = runner.db.list(status=status, limit=limit, offset=offset)
    return JobList(total=total, offset=offset, limit=limit, items=[job_status(r) for r in rows])


@router.get("/{job_id}", response_model=JobStatus, summary="Status and progress of a job")
def get_job(job_id: JobId, runner: Annotated[JobRunner, Depends(get_runner)]) -> JobStatus:
    return job_status(_job(runner, job_id))


# ---------------------------------------------------------------------------------- results
Controls = Annotated[bool, Query(description="Include control perturbagens (pert_type ctl_*, e.g. EMPTY_VECTOR, DMSO).")]
_SEARCH = ("sig_id", "id", "pert_id", "pert_iname", "moa", "cell_id", "pcl", "target")


def without_controls(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without control perturbagens (``pert_type`` starting with ``ctl``)."""
    if "pert_type" not in frame.columns:
        return frame
    return frame[~frame["pert_type"].astype(str).str.startswith("ctl").to_numpy()]


def _member_names(frame: pd.DataFrame, catalogue: Catalogue) -> pd.DataFrame:
    """Add ``member_names`` (pert_iname of each member, ``|``-joined like ``members``) to PCL rows."""
    if "members" not in frame.columns or frame.empty:
        return frame
    perts = catalogue.perturbagens
    name = dict(zip(perts["pert_id"].astype(str), perts.get("pert_iname", perts["pert_id"]).astype(str), strict=True))
    frame = frame.copy()
    frame["member_names"] = ["|".join(name.get(m, m) for m in str(ms).split("|") if m) for ms in frame["members"]]
    return frame


@router.get("/{job_id}/results", response_model=ResultPage, summary="Connections of one query at one level")
def results(
    job_id: JobId,
    runner: Annotated[JobRunner, Depends(get_runner)],
    catalogue: Annotated[Catalogue, Depends(get_catalogue)],
    level: Annotated[Level, Query(description="sig, pert_cell, pert_summary, pcl_cell or pcl_summary")] = "pert_summary",
    query: QueryName = None,
    sort: Metric = None,
    order: Annotated[Literal["asc", "desc", "abs"], Query(description="desc, asc, or abs (largest magnitude first)")] = "desc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    q: Annotated[str | None, Query(max_length=200, description="Text search in ids, names, MOA, cell line.")] = None,
    cell_id: Text = None,
    pert_type: Text = None,
    fdr_max: Annotated[float | None, Query(ge=0, le=1, description="Only rows with fdr_q <= this (sig level).")] = None,
    controls: Controls = True,
) -> ResultPage:
    result = _result(runner, job_id)
    name = result.query_name(query)
    frame = result.to_frame(level, query=name)
    if not controls:
        frame = without_controls(frame)
    metrics = list(result.level(level).metrics)
    sort = sort or result.default_metric(level)
    total, rows = page_frame(
        frame,
        equals={k: v for k, v in (("cell_id", cell_id), ("pert_type", pert_type)) if k in frame.columns},
        search=q,
        search_columns=_SEARCH,
        maximum={"fdr_q": fdr_max} if fdr_max is not None else None,
        sort=sort,
        descending=order != "asc",
        by_magnitude=order == "abs",
        limit=limit,
        offset=offset,
    )
    return ResultPage(
        total=total, offset=offset, limit=limit, items=records(_member_names(rows, catalogue)), level=level, query=name,
        metrics=metrics, sort=sort, order=order, notes=result.report(),
    )  # fmt: skip


@router.get("/{job_id}/heatmap", response_model=Heatmap, summary="Perturbagen (or PCL) x cell line matrix of the top rows")
def heatmap(
    job_id: JobId,
    runner: Annotated[JobRunner, Depends(get_runner)],
    query: QueryName = None,
    metric: Metric = None,
    n: Annotated[int, Query(ge=1, le=200, description="Rows: the first n of the summary table, filtered and sorted.")] = 30,
    kind: Annotated[Literal["pert", "pcl"], Query(description="pert: perturbagen x cell; pcl: PCL x cell")] = "pert",
    sort: Metric = None,
    order: Annotated[Literal["asc", "desc", "abs"], Query(description="desc, asc or abs (default: abs)")] = "abs",
    q: Annotated[str | None, Query(max_length=200, description="Text search, as for /results.")] = None,
    pert_type: Text = None,
    controls: Controls = True,
) -> Heatmap:
    """Rows are the first ``n`` rows of ``pert_summary`` (``pcl_summary``) after the same filters and
    sort as ``/results``, in that order; columns the cell lines of ``pert_cell`` (``pcl_cell``)."""
    result = _result(runner, job_id)
    name = result.query_name(query)
    summary, cellv = ("pert_summary", "pert_cell") if kind == "pert" else ("pcl_summary", "pcl_cell")
    key = "pert_id" if kind == "pert" else "pcl"
    if summary not in result.levels or cellv not in result.levels:
        raise QueryError(f"this result has no {summary}/{cellv} levels (non-connectivity metric); no heatmap")
    metric = metric or result.default_metric(cellv)
    top = result.to_frame(summary, query=name)
    if not controls:
        top = without_controls(top)
    _, top = page_frame(
        top,
        equals={"pert_type": pert_type} if pert_type and "pert_type" in top.columns else None,
        search=q,
        search_columns=_SEARCH,
        sort=sort or metric,
        descending=order != "asc",
        by_magnitude=order == "abs",
        limit=n,
    )
    rows = top["id"].astype(str).tolist()
    # only the cell rows of these perturbagens (PCLs): not the whole level as a table (236,000 rows
    # of every metric and metadata at 473,647 signatures cost seconds per heatmap)
    lv = result.level(cellv)
    if metric not in lv.metrics:
        raise IdNotFoundError(f"no metric {metric!r} at level {cellv!r} (has {sorted(lv.metrics)})")
    keys = lv.index[key].astype(str).to_numpy()
    hit = np.flatnonzero(np.isin(keys, rows))
    cells = pd.DataFrame({
        key: keys[hit],
        "cell_id": lv.index["cell_id"].to_numpy()[hit],
        metric: lv.metrics[metric][hit, result.query_names.index(name)],
    })  # fmt: skip
    grid = cells.pivot_table(index=key, columns="cell_id", values=metric, aggfunc="first", dropna=False).reindex(rows)
    if kind == "pert":
        names = top["pert_iname"].astype(str).tolist() if "pert_iname" in top.columns else rows
        types = top["pert_type"].astype(str).tolist() if "pert_type" in top.columns else [""] * len(rows)
        labels = [f"{nm} ({t})" if t else nm for nm, t in zip(names, types, strict=True)]
    else:
        labels = rows
    values = [[json_value(v) for v in row] for row in np.asarray(grid.to_numpy(dtype=np.float64)).tolist()]
    return Heatmap(query=name, metric=metric, rows=rows, row_labels=labels, columns=[str(c) for c in grid.columns], values=values)


@router.get("/{job_id}/running-sum", response_model=RunningSumOut, summary="Enrichment running sum of a query along one signature")
def running_sum(
    job_id: JobId,
    runner: Annotated[JobRunner, Depends(get_runner)],
    engine: Annotated[Engine, Depends(get_engine)],
    sig_id: Annotated[str, Query(min_length=1, max_length=200)],
    query: QueryName = None,
) -> RunningSumOut:
    from opencmap.query.running_sum import running_sum as walk

    result = _result(runner, job_id)
    name = result.query_name(query)
    q = result.queries[result.query_names.index(name)]
    curves = walk(engine.store, sig_id, up=q.up_genes, down=q.down_genes, space=result.space, weighted=result.method != "cs")
    symbol = dict(zip(engine.store.genes["pr_gene_id"].astype(str), engine.store.genes.get("pr_gene_symbol", engine.store.genes["pr_gene_id"]).astype(str), strict=True))
    out = {}
    for direction, c in curves.items():
        out[direction] = {
            "x": c.x.tolist(),
            "y": [json_value(v) for v in c.y.tolist()],
            "hit_ranks": c.hit_ranks.tolist(),
            "hit_genes": list(c.hit_genes),
            "hit_symbols": [symbol.get(g, g) for g in c.hit_genes],
            "es": json_value(c.es),
            "es_rank": c.es_rank,
            "leading_edge": list(c.leading_edge),
        }
    n_features = engine.store.space(result.space).n_features
    return RunningSumOut(sig_id=sig_id, query=name, space=result.space, n_features=n_features, curves=out)


# ---------------------------------------------------------------------------------- downloads
@router.get("/{job_id}/downloads", summary="Files of a finished job")
def downloads(job_id: JobId, runner: Annotated[JobRunner, Depends(get_runner)]) -> dict[str, list[dict[str, str]]]:
    result = _result(runner, job_id)
    files = [{"name": f.name, "format": f.format, "description": f.description} for f in result_files(result, DOWNLOAD_FORMATS)]
    return {"files": files}


@router.get("/{job_id}/downloads/{name}", summary="Download one file of a job (TSV or GCTX)", response_class=FileResponse)
async def download(
    job_id: JobId,
    name: Annotated[str, PathParam(max_length=100)],
    runner: Annotated[JobRunner, Depends(get_runner)],
) -> FileResponse:
    try:
        wanted = parse_file_name(name)  # also the matrix names of earlier versions, <level>__<metric>.gctx
    except IdNotFoundError:
        wanted = None
    if wanted is None or wanted.format not in (*DOWNLOAD_FORMATS, "txt", "json"):
        raise IdNotFoundError(f"no download {name!r}; list them with GET /api/v1/jobs/{job_id}/downloads")
    result = _result(runner, job_id)
    level, metric = wanted.level, wanted.metric
    if level is not None and (level not in LEVELS or level not in result.levels):
        raise IdNotFoundError(f"no level {level!r} in this job (has {list(result.levels)})")
    if metric is not None and metric not in result.level(level).metrics:
        raise IdNotFoundError(f"no metric {metric!r} at level {level!r}")
    tmp = Path(tempfile.mkdtemp(prefix="opencmap-download-"))
    path = tmp / name  # name is a result file name (parse_file_name): no separators, no '..'

    try:
        await run_in_threadpool(result.write_file, path, level=level, metric=metric)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    media = {".tsv": "text/tab-separated-values", ".txt": "text/plain", ".json": "application/json"}.get(path.suffix, "application/x-hdf5")
    filename = f"opencmap-{job_id[:8]}-{name}"
    return FileResponse(path, media_type=media, filename=filename, background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))
