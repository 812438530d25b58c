"""CLUE query jobs on top of the server's job queue: submission parsing, CLUE metadata, result archive.

A CLUE job is an ordinary opencmap job (:class:`~opencmap.api.jobs.JobRunner`) plus the few fields
CLUE clients send and read back (``name``, ``tool_id``, ``data_type``, ``dataset``), kept in a
``clue_jobs`` table of the same SQLite file. The result archive is written on demand from the
stored :class:`~opencmap.query.result.QueryResult` in clue.io's layout (:func:`write_archive`).
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opencmap.core.genesets import GeneSet
from opencmap.core.schema import LEVELS
from opencmap.errors import FormatError, ValidationError
from opencmap.query.genesets import Query
from opencmap.query.result import QueryResult

__all__ = ["TOOLS", "ClueJobs", "parse_submission", "write_archive", "clue_status"]

log = logging.getLogger(__name__)

#: tool_id -> what runs (every tool runs the same engine: WTCS, NCS, tau, FDR, summaries)
TOOLS = {
    "sig_gutc_tool": "WTCS -> NCS -> tau (GUTC) with perturbagen and PCL summaries",
    "sig_fastgutc_tool": "same as sig_gutc_tool (clueR's default tool)",
    "sig_queryl1k_tool": "same engine; the archive holds the same matrices",
}
_STATUS = {"queued": "pending", "running": "running", "done": "completed", "failed": "failed", "expired": "expired"}


_CLUE_TABLE = (
    "CREATE TABLE IF NOT EXISTS clue_jobs ("
    "job_id TEXT PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE, params TEXT NOT NULL, created REAL NOT NULL)"
)


class ClueJobs:
    """The ``clue_jobs`` table (job id -> CLUE parameters) in the server's job database.

    A row goes with its job: it references ``jobs(id)`` with ``ON DELETE CASCADE``, so a job
    deleted by its user or by the retention policy (:meth:`JobDB.enforce_retention
    <opencmap.api.jobs.store.JobDB.enforce_retention>`, whose connection enforces foreign keys)
    takes its CLUE row with it and the table stays as bounded as the jobs. A table made by an
    older server (no reference) is rebuilt once when opened, dropping the rows of jobs already gone.
    """

    def __init__(self, path: str | Path):
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(Path(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def _migrate(self) -> None:
        """Create the table, or rebuild an older one (no reference to ``jobs``) with the reference."""
        conn = self._conn
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'clue_jobs'").fetchone()
        if not exists:
            conn.execute(_CLUE_TABLE)
            return
        if conn.execute("PRAGMA foreign_key_list(clue_jobs)").fetchall():
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("ALTER TABLE clue_jobs RENAME TO clue_jobs_old")
            conn.execute(_CLUE_TABLE)
            kept = conn.execute(
                "INSERT INTO clue_jobs SELECT job_id, params, created FROM clue_jobs_old WHERE job_id IN (SELECT id FROM jobs)"
            ).rowcount
            dropped = conn.execute("SELECT COUNT(*) FROM clue_jobs_old").fetchone()[0] - kept
            conn.execute("DROP TABLE clue_jobs_old")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("CLUE job table rebuilt to follow its jobs: %d row(s) kept, %d of jobs already deleted dropped", kept, dropped)

    def add(self, job_id: str, params: Mapping[str, Any]) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO clue_jobs VALUES (?, ?, ?)", (job_id, json.dumps(dict(params)), time.time()))

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT params FROM clue_jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _gmt_sets(text: str, field: str) -> list[GeneSet]:
    from opencmap.io import read_gmt

    with tempfile.TemporaryDirectory(prefix="opencmap-clue-") as tmp:
        path = Path(tmp) / f"{field}.gmt"
        path.write_text(text, encoding="utf-8")
        try:
            return read_gmt(path)
        except FormatError as exc:
            raise FormatError(str(exc).replace(str(path), field)) from None


def parse_submission(fields: Mapping[str, Any]) -> tuple[list[Query], dict[str, Any], list[str]]:
    """(queries, CLUE params, notes) of a ``POST /api/jobs`` body (form fields or JSON).

    ``uptag-cmapfile`` / ``dntag-cmapfile`` are GMT text (CLUE's ``TAG<TAB><TAB>gene...``), one line
    per query; up and down sets pair by position. Raises :class:`~opencmap.errors.ValidationError`
    for an unknown ``tool_id`` or ``data_type``, or no gene sets.
    """
    tool = str(fields.get("tool_id") or "")
    if tool not in TOOLS:
        raise ValidationError(f"tool_id {tool!r} is not supported; supported: {', '.join(TOOLS)}")
    data_type = str(fields.get("data_type") or "L1000")
    if data_type != "L1000":
        raise ValidationError(f"data_type {data_type!r} is not supported; this server queries L1000 signatures (data_type=L1000)")
    notes: list[str] = []
    dataset = str(fields.get("dataset") or "")
    if dataset:
        notes.append(f"dataset {dataset!r} was asked for; this server queries its own reference store")
    up_text = str(fields.get("uptag-cmapfile") or "")
    dn_text = str(fields.get("dntag-cmapfile") or "")
    if not up_text.strip() and not dn_text.strip():
        raise ValidationError("give the query genes as 'uptag-cmapfile' and/or 'dntag-cmapfile' (GMT text or file uploads)")
    ups = _gmt_sets(up_text, "uptag-cmapfile") if up_text.strip() else []
    dns = _gmt_sets(dn_text, "dntag-cmapfile") if dn_text.strip() else []
    if ups and dns and len(ups) != len(dns):
        raise ValidationError(f"uptag-cmapfile has {len(ups)} gene sets and dntag-cmapfile {len(dns)}; give one up and one down set per query")
    n = max(len(ups), len(dns))
    queries = []
    for i in range(n):
        up = ups[i] if ups else None
        dn = dns[i] if dns else None
        name = (up or dn).name  # type: ignore[union-attr]
        queries.append(Query(name, up=tuple(up.genes) if up else (), down=tuple(dn.genes) if dn else ()))
    names = [q.name for q in queries]
    if len(set(names)) != len(names):
        queries = [Query(f"{q.name}_{i + 1}", up=q.up, down=q.down) for i, q in enumerate(queries)]
        notes.append("gene set names repeat; queries were numbered (NAME_1, NAME_2, ...)")
    params = {
        "name": str(fields.get("name") or "my_analysis"),
        "tool_id": tool,
        "data_type": data_type,
        "dataset": dataset,
        "ignoreWarnings": str(fields.get("ignoreWarnings", "false")).lower() in ("true", "1"),
    }
    return queries, params, notes


def clue_status(job: Mapping[str, Any], params: Mapping[str, Any], *, base: str) -> dict[str, Any]:
    """The ``findByJobId`` record of a job (CLUE's field names)."""
    status = _STATUS.get(str(job["status"]), str(job["status"]))
    done = job["status"] == "done"
    info = job.get("info") or {}
    return {
        "job_id": job["id"],
        "name": params.get("name"),
        "tool_id": params.get("tool_id"),
        "status": status,
        "download_status": "completed" if done else "pending",
        "download_url": f"{base}/api/jobs/{job['id']}/result.tar.gz" if done else "",
        "errorMessage": (job.get("error") or "") if job["status"] in ("failed", "expired") else "",
        "progress": float(job.get("progress") or 0.0),
        "created": job.get("created"),
        "finished": job.get("finished"),
        "params": dict(params),
        "notes": list(info.get("notes", [])),
        "queries": [q.get("name") for q in info.get("queries", [])],
    }


# ---------------------------------------------------------------------------------- archive
#: opencmap metric -> CLUE file stem, per level (gutc: ns = NCS, ps = tau percentile score)
_GUTC = {"ncs": "ns", "tau": "ps"}
_QUERY = {"es_up": "cs_up", "es_dn": "cs_dn", "leadf_up": "leadf_up", "leadf_dn": "leadf_dn"}
_LEVEL_STEM = {level: level for level in LEVELS}

ARCHIVE_README = """This archive was written by opencmap in the layout of a clue.io query result.

matrices/gutc/   cs_sig.gctx (raw connectivity, {method}), ns_<level>.gctx (normalised, NCS),
                 ps_<level>.gctx (percentile score, tau); levels sig, pert_cell, pert_summary,
                 pcl_cell, pcl_summary; rows = signatures / perturbagens / PCLs, columns = queries.
matrices/query/  up.gmt, dn.gmt (the genes each query used after restriction to the space),
                 cs_n<Q>x<S>.gctx, cs_up_/cs_dn_ (enrichment per direction), leadf_up_/leadf_dn_.
matrices/opencmap/  other opencmap metrics (e.g. fdr_q, fdr_q_nlog10) at the sig level.
query_info.txt   one row per query: genes used, unknown and out-of-space genes.
notes.txt        what the engine reported (dropped genes, borrowed NCS references, ...).
Not written: arfs/ (per-query text reports) and query_config.yaml.
Scores are opencmap's on the served store (space {space}), not clue.io's Touchstone.
"""


def write_archive(result: QueryResult, params: Mapping[str, Any], job_id: str, dest_dir: Path) -> Path:
    """Write ``<job_id>.tar.gz`` into ``dest_dir``: one folder ``<name>.<tool_id>.<job_id>`` in CLUE's layout."""
    root_name = f"{params.get('name') or 'my_analysis'}.{params.get('tool_id') or 'sig_gutc_tool'}.{job_id}"
    root_name = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in root_name)
    build = dest_dir / "build"
    root = build / root_name
    (root / "matrices" / "gutc").mkdir(parents=True)
    (root / "matrices" / "query").mkdir(parents=True)
    (root / "matrices" / "opencmap").mkdir(parents=True)
    n_q = len(result.queries)
    for level, lv in result.levels.items():
        stem = _LEVEL_STEM.get(level, level)
        for metric in lv.metrics:
            if metric in _GUTC:
                result.write_file(root / "matrices" / "gutc" / f"{_GUTC[metric]}_{stem}.gctx", level=level, metric=metric)
            elif level == "sig" and metric == result.method:
                result.write_file(root / "matrices" / "gutc" / "cs_sig.gctx", level=level, metric=metric)
                result.write_file(root / "matrices" / "query" / f"cs_n{n_q}x{len(lv.index)}.gctx", level=level, metric=metric)
            elif level == "sig" and metric in _QUERY:
                result.write_file(root / "matrices" / "query" / f"{_QUERY[metric]}_n{n_q}x{len(lv.index)}.gctx", level=level, metric=metric)
            else:
                result.write_file(root / "matrices" / "opencmap" / f"{metric}_{stem}.gctx", level=level, metric=metric)
    from opencmap.io import write_gmt

    ups = [GeneSet(q.name, "", tuple(q.up_genes)) for q in result.queries if len(q.up_genes)]
    dns = [GeneSet(q.name, "", tuple(q.down_genes)) for q in result.queries if len(q.down_genes)]
    write_gmt(ups, root / "matrices" / "query" / "up.gmt")
    write_gmt(dns, root / "matrices" / "query" / "dn.gmt")
    result.write_file(root / "query_info.txt")
    (root / "notes.txt").write_text("".join(f"{n}\n" for n in result.notes), encoding="utf-8")
    (root / "README.txt").write_text(ARCHIVE_README.format(method=result.method, space=result.space), encoding="utf-8")
    archive = shutil.make_archive(str(dest_dir / job_id), "gztar", root_dir=build, base_dir=root_name)
    shutil.rmtree(build, ignore_errors=True)
    return Path(archive)
