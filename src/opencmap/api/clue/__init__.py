"""A clue.io-compatible API beside the native one, so code written for clue.io runs against opencmap.

CLUE-compatible API
===================

``opencmap serve`` also answers the paths of clue.io's REST API under ``/api``, so scripts written
for clue.io (cmapPy's ``ClueApiClient``, clueR, BioClients, ``curl``) run against a self-hosted
store by changing the base URL from ``https://api.clue.io/api`` to ``http://HOST:PORT/api``::

    from cmapPy.clue_api_client.clue_api_client import ClueApiClient
    api = ClueApiClient(base_url="http://127.0.0.1:8000/api", user_key="<server token or anything>")
    api.run_filter_query("perts", {"where": {"pert_iname": {"inq": ["vorinostat"]}}, "fields": {"pert_id": True}})
    api.run_count_query("sigs", {"cell_id": "MCF7"})                      # {"count": ...}
    api.run_post("jobs", {"tool_id": "sig_gutc_tool", "name": "q1",
                          "uptag-cmapfile": "TAG\\t\\t7157\\t...", "dntag-cmapfile": "TAG\\t\\t4609\\t..."})

Covered
-------
- Collections ``perts``, ``sigs``, ``genes``, ``cells``, ``pcls``: ``GET /api/<resource>?filter=``
  and ``GET /api/<resource>/count?where=`` with LoopBack's filter JSON: ``where`` (equality and
  ``eq neq gt gte lt lte between inq nin like nlike ilike nilike regexp``, ``and``/``or``),
  ``fields`` (object or list), ``order``, ``limit``, ``skip``/``offset``
  (:mod:`opencmap.api.clue.loopback` has the exact semantics). Every record has an ``id`` (its
  primary id, as LoopBack's). Fields, from the served store:
  ``sigs`` = the store's ``sig_info`` columns; ``perts`` = ``pert_id pert_iname pert_type moa target
  num_sig cell_id num_cell pcl_membership`` (lists for moa, target, cell_id, pcl_membership);
  ``genes`` = ``entrez_id gene_symbol gene_title l1000_type`` (+ the store's ``pr_*`` fields);
  ``cells`` = ``cell_id cell_iname num_sig num_pert``; ``pcls`` = ``group_id name type members
  num_members num_in_store``.
- Query jobs: ``POST /api/jobs`` (JSON, form or multipart file uploads) with ``tool_id``
  (``sig_gutc_tool``, ``sig_fastgutc_tool``, ``sig_queryl1k_tool``: all run opencmap's WTCS -> NCS
  -> tau engine), ``uptag-cmapfile`` / ``dntag-cmapfile`` (GMT text, one line per query, paired by
  position), ``name``, ``data_type`` (``L1000`` only), ``dataset`` (noted; the served store is
  used), ``ignoreWarnings``. The answer is ``{"result": {"job_id", "status", ...}, "warnings"}``
  (HTTP 200, as cmapPy's ``run_post`` expects). ``GET /api/jobs/findByJobId/<job_id>`` answers
  ``status`` (``pending``/``running``/``completed``/``failed``/``expired``), ``download_status``,
  ``download_url``, ``errorMessage``, ``params``. ``download_url`` is scheme-relative
  (``//host/api/jobs/<id>/result.tar.gz``), as clue.io's: clients that prefix ``https:`` (clueR)
  need the server behind TLS; others fetch ``http://host/api/jobs/<id>/result.tar.gz``.
- The result archive (``<job_id>.tar.gz``) holds ``<name>.<tool_id>.<job_id>/`` with
  ``matrices/gutc/{cs_sig, ns_sig, ps_sig, ns_pert_cell, ps_pert_cell, ns_pert_summary,
  ps_pert_summary, ns_pcl_cell, ps_pcl_cell, ns_pcl_summary, ps_pcl_summary}.gctx`` (rows =
  signatures / perturbagens / PCLs, columns = queries; readable by cmapPy's ``parse``),
  ``matrices/query/{up.gmt, dn.gmt, cs_n<Q>x<S>.gctx, cs_up_*, cs_dn_*, leadf_up_*, leadf_dn_*}``,
  ``matrices/opencmap/`` (FDR), ``query_info.txt``, ``notes.txt``, ``README.txt``.
- ``user_key``: sent as a header (or ``?user_key=``), it must equal the server's API token
  (``opencmap serve --token``); a wrong or missing key is 401, also for the result archive (fetch
  it with the ``user_key`` header; clueR's ``download.file`` sends none, so with a token clueR
  downloads fail where clue.io's public S3 links would not). Without a token any key is accepted.
  Reverse proxies such as nginx drop headers with underscores unless told not to
  (``underscores_in_headers on``).

Not covered
-----------
Other clue.io collections (``profiles``, ``plates``, ``datasets``, ``dataTypes``, ``macchiato``,
``rep_fda_exclusivity``, ...), writes to collections (``run_post``/``run_put``/``run_delete`` on
anything but ``jobs``), LoopBack ``include``, ``near``, ``GET /api/<resource>/<id>``, the
query-string form ``?filter[where][field]=value`` (send the JSON form), the ``arfs/``
text reports and ``query_config.yaml`` of the archive, clue.io's Touchstone data (scores come from
the served store), and the exact status strings of clue.io's job queue beyond those listed. Errors
are ``{"error": {"statusCode", "name", "code", "message"}}``: an unsupported LoopBack operator or
filter key is 400 naming it and the supported ones; a filter without ``limit`` matching more than
10,000 records is 400 (page with ``limit``/``skip``), never silently truncated.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError as PydanticValidationError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from opencmap.api.clue.jobs import ClueJobs, clue_status, parse_submission, write_archive
from opencmap.api.clue.loopback import LoopBackError, apply_filter, apply_where, parse_filter, parse_where, unknown_fields
from opencmap.api.clue.resources import RESOURCES, ClueTables
from opencmap.api.deps import get_catalogue, get_runner, get_service
from opencmap.api.jobs import JobRunner
from opencmap.errors import OpenCMapError, ValidationError

__all__ = ["router", "MAX_RECORDS"]

#: the most records one ``GET /api/<resource>`` returns (a larger match needs ``limit``/``skip``)
MAX_RECORDS = 10_000

router = APIRouter(tags=["clue"])
_build_lock = threading.Lock()


def _error(status: int, code: str, message: str) -> JSONResponse:
    """LoopBack's error envelope (``statusCode``, ``name``, ``message``) plus opencmap's ``code``."""
    return JSONResponse({"error": {"statusCode": status, "name": "Error", "code": code, "message": message}}, status_code=status)


def get_tables(request: Request) -> ClueTables:
    """The CLUE collections of the served store (built on first use, then cached)."""
    state = request.app.state
    tables = getattr(state, "clue_tables", None)
    if tables is None:
        with _build_lock:
            tables = getattr(state, "clue_tables", None)
            if tables is None:
                tables = ClueTables.build(state.engine.store, get_catalogue(request))
                state.clue_tables = tables
    return tables


def get_clue_jobs(request: Request) -> ClueJobs:
    state = request.app.state
    jobs = getattr(state, "clue_jobs", None)
    if jobs is None:
        with _build_lock:
            jobs = getattr(state, "clue_jobs", None)
            if jobs is None:
                jobs = ClueJobs(state.runner.db.path)
                state.clue_jobs = jobs
    return jobs


FilterText = Annotated[str | None, Query(alias="filter", max_length=200_000, description="LoopBack filter JSON.")]
WhereText = Annotated[str | None, Query(max_length=200_000, description="LoopBack where JSON.")]


def _collection_routes(resource: str) -> None:
    def find(request: Request, filter_text: FilterText = None) -> Any:
        try:
            table = get_tables(request).table(resource)
            flt = parse_filter(filter_text)
            records = apply_filter(table, flt, resource=resource, max_rows=MAX_RECORDS)
        except LoopBackError as exc:
            return _error(400, "invalid_filter", str(exc))
        unknown = unknown_fields(table, flt)
        headers = {"X-OpenCMap-Unknown-Fields": ",".join(unknown)[:2000]} if unknown else None
        return JSONResponse(records, headers=headers)

    def count(request: Request, where: WhereText = None) -> Any:
        try:
            table = get_tables(request).table(resource)
            return {"count": int(apply_where(table, parse_where(where), resource=resource).sum())}
        except LoopBackError as exc:
            return _error(400, "invalid_filter", str(exc))

    router.add_api_route(f"/{resource}", find, methods=["GET"], summary=f"CLUE: find {resource} (LoopBack filter)")
    router.add_api_route(f"/{resource}/count", count, methods=["GET"], summary=f"CLUE: count {resource} (LoopBack where)")


for _resource in RESOURCES:
    _collection_routes(_resource)


async def _fields(request: Request) -> dict[str, Any]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise ValidationError("the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ValidationError("the request body must be a JSON object")
        return body
    form = await request.form()
    out: dict[str, Any] = {}
    for key, value in form.multi_items():
        if hasattr(value, "read"):
            raw = await value.read()
            try:
                out[key] = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ValidationError(f"upload {key!r} is not UTF-8 text (expected a GMT file)") from None
        else:
            out[key] = value
    return out


@router.post("/jobs", summary="CLUE: submit a query job (sig_gutc_tool / sig_queryl1k_tool)")
async def submit_job(request: Request) -> Any:
    from opencmap.api.schemas import QueryRequest

    service = get_service(request)
    runner = get_runner(request)
    try:
        queries, params, notes = parse_submission(await _fields(request))
        req = QueryRequest.model_validate({"queries": [{"name": q.name, "up": list(q.up), "down": list(q.down)} for q in queries]})
    except PydanticValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        return _error(400, "invalid_job", f"invalid job: {'.'.join(map(str, first.get('loc', ())))}: {first.get('msg', '')}")
    except OpenCMapError as exc:
        return _error(400, "invalid_job", str(exc))
    try:
        n, batch = await run_in_threadpool(service.prepare, req)  # validated once (on_invalid="raise")
    except OpenCMapError as exc:  # unusable gene sets, limits: the library's message
        return _error(400, "invalid_job", str(exc))
    assert batch is not None
    for v in batch.queries:
        if v.unknown or v.dropped:
            notes.append(f"query {v.name}: {len(v.unknown)} unknown genes ({', '.join(v.unknown[:10])}) and "
                         f"{len(v.dropped)} outside the feature space were dropped")
    job_id = runner.submit(req.model_dump(), n_queries=n)
    get_clue_jobs(request).add(job_id, params)
    job = runner.db.get(job_id) or {"id": job_id, "status": "queued"}
    status = clue_status(job, params, base=f"//{request.url.netloc}")
    return {"result": status, "warnings": notes}


@router.get("/jobs/findByJobId/{job_id}", summary="CLUE: status of a query job")
def find_job(job_id: str, request: Request) -> Any:
    runner: JobRunner = get_runner(request)
    job = runner.db.get(job_id)
    if job is None:
        return _error(404, "not_found", f"no job {job_id!r} on this server")
    params = get_clue_jobs(request).get(job_id) or {}
    return clue_status(job, params, base=f"//{request.url.netloc}")


@router.get("/jobs/{job_id}/result.tar.gz", summary="CLUE: result archive of a finished job", response_class=FileResponse)
async def job_archive(job_id: str, request: Request) -> Any:
    runner: JobRunner = get_runner(request)
    job = runner.db.get(job_id)
    if job is None:
        return _error(404, "not_found", f"no job {job_id!r} on this server")
    if job["status"] == "expired":
        return _error(410, "expired", f"job {job_id}: {job['error']}")
    if job["status"] != "done":
        return _error(409, "not_ready", f"job {job_id} is {job['status']}" + (f": {job['error']}" if job["error"] else "; poll findByJobId until it is completed"))
    params = get_clue_jobs(request).get(job_id) or {}
    result = await run_in_threadpool(runner.result, job_id)
    tmp = Path(tempfile.mkdtemp(prefix="opencmap-clue-"))
    try:
        path = await run_in_threadpool(write_archive, result, params, job_id, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FileResponse(path, media_type="application/gzip", filename=f"{job_id}.tar.gz",
                        background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))
