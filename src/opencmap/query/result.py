"""Query results: per-level score matrices with metadata, top connections, tables and files.

A :class:`QueryResult` holds, per level (``sig``, ``pert_cell``, ``pert_summary``, ``pcl_cell``,
``pcl_summary``), a :class:`LevelResult`: an index table (one row per signature / perturbagen x
cell / perturbagen / PCL, with its metadata) and metric matrices of shape ``(n_rows, n_queries)``
(e.g. ``wtcs``, ``es_up``, ``ncs``, ``tau``, ``fdr_q``, ``fdr_p``, ``fdr_flag``); :attr:`QueryResult.fdr` records
the FDR method and its null per query (and side, for the ``cmap`` method).

A result round-trips exactly through :meth:`QueryResult.to_bytes` / :meth:`QueryResult.from_bytes`
(or :meth:`QueryResult.save` / :meth:`QueryResult.load` for a file). The stored form is one ZIP
archive (uncompressed) holding ``header.json`` (``format``, ``format_version``, method, space,
params, notes, queries, levels with their row counts and metric names), each level's index table
as ``<level>/index.parquet`` and each metric matrix as ``<level>/<metric>.npy``, and query rows /
vectors as ``queries/<i>/<name>.npy``. Readers refuse a newer ``format_version``
(:class:`~opencmap.errors.VersionError`).

Every file of a result (this stored form, the results folder of :meth:`QueryResult.write`, the
API's downloads) is written and read by :mod:`opencmap.io.result_archive`; this module keeps the
in-memory result, and its file methods delegate there.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opencmap.core.gct import GCT
from opencmap.errors import ConfigError, FormatError, IdNotFoundError, QueryError
from opencmap.io.result_archive import FOLDER_MARKERS as RESULT_FOLDER_MARKERS  # noqa: F401 (its old home, still imported)
from opencmap.io.result_archive import LEVELS, RESULT_FORMAT_VERSION

__all__ = ["LevelResult", "QueryResult", "LEVELS", "RESULT_FORMAT_VERSION"]

_ID_COLUMN = {"sig": "sig_id"}
_QUERY_ARRAYS = ("up_rows", "down_rows", "vector")
_QUERY_TUPLES = ("up_genes", "down_genes", "unknown", "dropped")


@dataclass
class LevelResult:
    """Metrics of one level: ``index`` (n rows of metadata, first column = id) and (n, Q) matrices."""

    name: str
    index: pd.DataFrame
    metrics: dict[str, np.ndarray]

    @property
    def ids(self) -> pd.Index:
        return pd.Index(self.index.iloc[:, 0].astype(str), dtype=object)


@dataclass
class QueryResult:
    """The result of a batch of queries (see the module docstring)."""

    queries: Sequence[Any]  # ValidatedQuery
    levels: dict[str, LevelResult]
    method: str
    space: str
    params: Mapping[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: what the result used (JSON-ready): ``{"queries": [one dict per query, e.g. {"tail": "up",
    #: "score": "es_up", "tau": {...}}], "tau": {...}, ...}``. Each step adds its own keys; results
    #: stored before this field existed load with ``{}``.
    provenance: dict[str, Any] = field(default_factory=dict)
    #: the FDR method and its null per query and side (``fdr_null.py``; {} when no FDR was computed)
    fdr: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ access
    @property
    def query_names(self) -> list[str]:
        return [q.name for q in self.queries]

    def __repr__(self) -> str:
        lv = {k: sorted(v.metrics) for k, v in self.levels.items()}
        return f"QueryResult({len(self.queries)} queries, metric {self.method!r}, space {self.space!r}, levels {lv})"

    def level(self, name: str = "sig") -> LevelResult:
        if name not in self.levels:
            hint = ""
            if name in ("pcl_cell", "pcl_summary"):
                hint = "; PCL levels need perturbagen classes: run with a PCL GMT of pert_ids (pcl=, --pcl)"
            raise IdNotFoundError(f"no level {name!r} in this result (has {sorted(self.levels)}){hint}")
        return self.levels[name]

    def _query_index(self, query: int | str | None) -> int:
        if query is None:
            return 0
        if isinstance(query, int | np.integer):
            if not 0 <= int(query) < len(self.queries):
                raise IdNotFoundError(f"query index {query} out of range 0..{len(self.queries) - 1}")
            return int(query)
        names = self.query_names
        if query not in names:
            raise IdNotFoundError(f"no query named {query!r}; queries: {names[:10]}")
        return names.index(query)

    def query_name(self, query: int | str | None = None) -> str:
        """The name of a query given by position or name (default: the first query)."""
        return self.queries[self._query_index(query)].name

    def default_metric(self, level: str = "sig") -> str:
        """The metric shown by default at ``level``: ``tau``, else ``ncs``, else the raw score."""
        metrics = self.level(level).metrics
        for m in ("tau", "ncs", self.method):
            if m in metrics:
                return m
        return next(iter(metrics))

    def query_provenance(self, query: int | str | None = None) -> dict[str, Any]:
        """What one query used (its tail, its tau background, ...); ``{}`` if not recorded."""
        j = self._query_index(query)
        per_query = self.provenance.get("queries") or []
        return dict(per_query[j]) if j < len(per_query) else {}

    @property
    def tails(self) -> list[str | None]:
        """Per query the tail it was scored on: ``both`` (WTCS), ``up`` (ES_up), ``down``
        (-ES_dn); None for vector queries or results stored without it."""
        return [self.query_provenance(j).get("tail") for j in range(len(self.queries))]

    def query_table(self) -> pd.DataFrame:
        """One row per query: genes used, unknown and out-of-space genes, tail (when recorded); with
        an FDR, its method and null (``fdr_method``, and e.g. ``fdr_positive_n_null`` / ``fdr_n_random``)."""
        rows = [q.summary() for q in self.queries]
        per_query = self.fdr.get("queries", {}) if self.fdr else {}
        for row in rows:
            rec = per_query.get(row.get("query"))
            if rec is None:
                continue
            row["fdr_method"] = self.fdr.get("method", "")
            for key, value in rec.items():
                if isinstance(value, Mapping):  # per side (cmap method)
                    row.update({f"fdr_{key}_{k}": v for k, v in value.items() if k != "n_null_distinct"})
                elif key != "null_key" and value is not None:
                    row[f"fdr_{key}"] = value
        table = pd.DataFrame(rows)
        tails = self.tails
        if any(t is not None for t in tails):
            table["tail"] = tails
        return table

    # ------------------------------------------------------------------ tables
    def to_frame(self, level: str = "sig", *, query: int | str | None = None, metadata: bool = True) -> pd.DataFrame:
        """Long table: one row per (query, row of the level) with every metric (+ metadata)."""
        lv = self.level(level)
        qidx = range(len(self.queries)) if query is None else [self._query_index(query)]
        return pd.concat([self._query_frame(lv, j, metadata=metadata) for j in qidx], ignore_index=True)

    def _query_frame(self, lv: LevelResult, j: int, rows: np.ndarray | None = None, *, metadata: bool = True) -> pd.DataFrame:
        """Query ``j``'s rows (all, or positions ``rows``) of level ``lv``: metadata + every metric."""
        index = lv.index if metadata else lv.index.iloc[:, :1]
        frame = (index if rows is None else index.iloc[rows]).reset_index(drop=True).copy()
        for name, values in lv.metrics.items():
            frame[name] = values[:, j] if rows is None else values[rows, j]
        if "fdr_flag" in frame.columns:  # the CMap FDR's side flags, by name ("" where it is usable)
            from opencmap.kernels.fdr import flag_names

            frame["fdr_flag"] = [flag_names(int(c)) for c in frame["fdr_flag"]]
        frame.insert(0, "query", self.queries[j].name)
        return frame

    def top(
        self,
        n: int = 20,
        *,
        query: int | str | None = None,
        level: str = "sig",
        by: str | None = None,
        direction: str = "positive",
    ) -> pd.DataFrame:
        """The ``n`` strongest connections of one query at ``level``.

        ``by`` defaults to ``tau``, else ``ncs``, else the raw score. ``direction``: ``positive``
        (largest first: mimickers), ``negative`` (most negative first: reversers) or ``both``
        (largest magnitude first). NaN rows are never listed.
        """
        j = self._query_index(query)
        return self._query_frame(self.level(level), j, self.top_rows(n, query=j, level=level, by=by, direction=direction))

    def top_rows(
        self,
        n: int = 20,
        *,
        query: int | str | None = None,
        level: str = "sig",
        by: str | None = None,
        direction: str = "positive",
    ) -> np.ndarray:
        """Row positions at ``level`` of :meth:`top` (same arguments), strongest first, without
        building a table: picked from the one metric column (the ``n`` best keys and their ties,
        then a stable sort, so ties keep row order)."""
        if direction not in ("positive", "negative", "both"):
            raise ConfigError(f"direction must be positive, negative or both, got {direction!r}")
        by = by or self.default_metric(level)
        lv = self.level(level)
        if by not in lv.metrics:
            raise IdNotFoundError(f"no metric {by!r} at level {level!r} (has {sorted(lv.metrics)})")
        values = np.asarray(lv.metrics[by][:, self._query_index(query)], dtype=np.float64)
        finite = np.flatnonzero(np.isfinite(values))
        kept = values[finite]
        key = -kept if direction == "positive" else kept if direction == "negative" else -np.abs(kept)
        n = max(int(n), 0)
        if 0 < n < key.size:  # only the n best keys and every tie of the n-th can be listed
            near = key <= np.partition(key, n - 1)[n - 1]
            finite, key = finite[near], key[near]
        return finite[np.argsort(key, kind="stable")[:n]]

    def pert_cell_grid(
        self, n: int = 30, *, query: int | str | None = None, metric: str | None = None
    ) -> tuple[pd.DataFrame, list[str]]:
        """Perturbagen x cell line table of ``metric`` for the ``n`` strongest perturbagens.

        Rows: the ``n`` perturbagens with the largest ``|metric|`` at ``pert_summary`` (strongest
        first, indexed by ``pert_id``); columns: cell lines of the ``pert_cell`` level; NaN where a
        perturbagen was not profiled in a cell line. Also returns the row labels (``pert_iname``
        when known, else the ``pert_id``). ``metric`` defaults to :meth:`default_metric` of
        ``pert_cell``. Raises :class:`~opencmap.errors.QueryError` when the result has no
        perturbagen levels (non-connectivity metrics).
        """
        if "pert_cell" not in self.levels or "pert_summary" not in self.levels:
            raise QueryError("this result has no perturbagen summaries (non-connectivity metric); no perturbagen x cell grid")
        metric = metric or self.default_metric("pert_cell")
        top = self.top(n, query=query, level="pert_summary", by=metric, direction="both")
        lv = self.level("pert_cell")
        picked = np.flatnonzero(lv.index["pert_id"].astype(str).isin(set(top["id"].astype(str))).to_numpy())
        cells = self._query_frame(lv, self._query_index(query), picked)
        grid = cells.pivot_table(index="pert_id", columns="cell_id", values=metric, aggfunc="first", dropna=False)
        rows = [str(p) for p in top["id"]]
        labels = top["pert_iname"].astype(str).tolist() if "pert_iname" in top.columns else rows
        return grid.reindex(rows), labels

    def matrix(self, metric: str | None = None, *, level: str = "sig") -> GCT:
        """One metric as a GCT: rows of the level x queries (row metadata = the level's index)."""
        lv = self.level(level)
        metric = metric or self.default_metric(level)
        if metric not in lv.metrics:
            raise IdNotFoundError(f"no metric {metric!r} at level {level!r} (has {sorted(lv.metrics)})")
        row_meta = lv.index.copy()
        row_meta.index = lv.ids
        row_meta = row_meta.iloc[:, 1:]
        col_meta = self.query_table().set_index("query")
        return GCT(lv.metrics[metric], rids=lv.ids, cids=self.query_names, row_meta=row_meta, col_meta=col_meta)

    # ------------------------------------------------------------------ files
    def write(
        self,
        out_dir: str | os.PathLike[str],
        *,
        format: str = "tsv",
        levels: Sequence[str] | None = None,
        overwrite: bool = False,
        overwrite_flag: str = "overwrite=True",
    ) -> list[Path]:
        """Write the result as a new folder ``out_dir``; returns the files written.

        ``tsv`` / ``parquet``: one long table per level (``<level>.tsv``); ``gctx``: one matrix per
        level and metric (``<level>_<metric>.gctx``, rows x queries); ``h5ad``: one AnnData per
        level. Always ``queries.tsv``, ``notes.txt`` (:meth:`report`) and ``describe.json``
        (:meth:`describe`). The layout is :mod:`opencmap.io.result_archive`'s, shared with the API.

        The folder is written aside and swapped in whole (:func:`opencmap.io.atomic.atomic_write_dir`):
        it never mixes files of two runs, and a failure leaves an earlier folder as it was. A
        folder that exists and is not empty is refused (:class:`~opencmap.errors.ConfigError`)
        unless ``overwrite``, which replaces it whole if it is a results folder (it holds a
        ``queries.tsv`` or ``describe.json``); so is a path that is a file. ``overwrite_flag`` is
        the option named in those errors (``--overwrite`` for the CLI).
        """
        from opencmap.io.result_archive import write_result_folder

        return write_result_folder(self, out_dir, formats=(format,), levels=levels, overwrite=overwrite, overwrite_flag=overwrite_flag)

    def write_file(self, path: str | os.PathLike[str], *, level: str | None = None, metric: str | None = None) -> Path:
        """Write one table or matrix (atomically); returns ``path``.

        No ``level``: the query table (TSV), or, for a file named ``notes.txt`` / ``describe.json``,
        :meth:`report` / :meth:`describe`. ``level`` alone: the level's long table
        (:meth:`to_frame`), Parquet when ``path`` ends in ``.parquet``, else TSV. ``level`` and
        ``metric``: that metric as a GCTX matrix (:meth:`matrix`). See
        :func:`opencmap.io.result_archive.write_result_file`.
        """
        from opencmap.io.result_archive import write_result_file

        return write_result_file(self, path, level=level, metric=metric)

    # ------------------------------------------------------------------ storage
    def report(self) -> list[str]:
        """What this result used, as short readable lines (:func:`opencmap.query.notes.result_notes`
        of :meth:`describe`): method, space and parameters, per query the genes used, left out
        and mapped, and every note of the engine. The CLI prints them; the API returns them as
        ``notes``."""
        from opencmap.query.notes import result_notes

        return result_notes(self.describe())

    def describe(self) -> dict[str, Any]:
        """JSON-ready description: method, space, params, notes, queries (genes kept, unknown,
        dropped, suggestions, and what each used: ``tail`` and ``provenance``), the batch-wide
        ``provenance`` (e.g. ``tau``: method and backgrounds), level names and each level's metric
        names (no score values)."""
        return {
            "method": self.method,
            "space": self.space,
            "params": dict(self.params),
            "notes": list(self.notes),
            "fdr": dict(self.fdr),
            "queries": [
                {
                    "name": q.name,
                    **{k: list(getattr(q, k, ())) for k in _QUERY_TUPLES},
                    "suggestions": {k: list(v) for k, v in dict(getattr(q, "suggestions", {})).items()},
                    "mapped": {side: {t: list(m) for t, m in d.items()} for side, d in dict(getattr(q, "mapped", {})).items()},
                    "ambiguous": {
                        side: {t: [list(c) for c in cs] for t, cs in d.items()} for side, d in dict(getattr(q, "ambiguous", {})).items()
                    },
                    "reasons": dict(getattr(q, "reasons", {})),
                    "tail": self.query_provenance(j).get("tail"),
                    "provenance": self.query_provenance(j),
                }
                for j, q in enumerate(self.queries)
            ],
            "provenance": {k: v for k, v in self.provenance.items() if k != "queries"},
            "levels": list(self.levels),
            "metrics": {name: list(lv.metrics) for name, lv in self.levels.items()},
        }

    def to_bytes(self, *, omit_index: Collection[str] = ()) -> bytes:
        """The whole result as bytes (see the module docstring for the layout;
        :func:`opencmap.io.result_archive.pack_result` writes it).

        Levels named in ``omit_index`` store only their row count, not their index table (e.g. the
        ``sig`` index when it is a store's ``sig_info``); :meth:`from_bytes` then needs it back.
        """
        from opencmap.io.result_archive import pack_result

        return pack_result(
            self.describe(),
            [{key: getattr(q, key, None) for key in _QUERY_ARRAYS} for q in self.queries],
            [(name, lv.index, lv.metrics) for name, lv in self.levels.items()],
            omit_index=omit_index,
        )

    @classmethod
    def from_bytes(cls, data: bytes, *, index: Mapping[str, pd.DataFrame] | None = None) -> QueryResult:
        """Rebuild a result from :meth:`to_bytes` output (read by :func:`opencmap.io.result_archive.unpack_result`).

        ``index`` gives the index tables of levels stored without one (``omit_index``); a table
        whose row count differs from the stored one raises :class:`~opencmap.errors.ValidationError`.
        Raises :class:`~opencmap.errors.VersionError` for a newer format version and
        :class:`~opencmap.errors.FormatError` for anything that is not a stored result.
        """
        from opencmap.io.result_archive import unpack_result
        from opencmap.query.genesets import ValidatedQuery

        header, arrays, stored = unpack_result(data, _QUERY_ARRAYS, index=index)
        empty = np.empty(0, np.intp)
        try:
            queries = [
                ValidatedQuery(
                    entry["name"],
                    a["up_rows"] if a["up_rows"] is not None else empty,
                    a["down_rows"] if a["down_rows"] is not None else empty,
                    vector=a["vector"],
                    suggestions={k: tuple(v) for k, v in entry.get("suggestions", {}).items()},
                    mapped={side: {t: tuple(m) for t, m in d.items()} for side, d in entry.get("mapped", {}).items()},
                    ambiguous={
                        side: {t: tuple(tuple(c) for c in cs) for t, cs in d.items()} for side, d in entry.get("ambiguous", {}).items()
                    },
                    reasons=dict(entry.get("reasons", {})),
                    **{k: tuple(entry.get(k, ())) for k in _QUERY_TUPLES},
                )
                for entry, a in zip(header["queries"], arrays, strict=True)
            ]
            return cls(
                queries=queries,
                levels={name: LevelResult(name, frame, metrics) for name, frame, metrics in stored},
                method=header["method"],
                space=header["space"],
                params=header["params"],
                notes=header["notes"],
                provenance=_provenance_from_header(header),
                fdr=header.get("fdr", {}),
            )
        except (KeyError, ValueError) as exc:
            raise FormatError(f"stored query result is damaged or incomplete ({exc}); re-run the query") from exc

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the whole result to one file (atomically); read it back with :meth:`load`."""
        from opencmap.io.atomic import atomic_write_path

        path = Path(path)
        with atomic_write_path(path) as tmp:
            Path(tmp).write_bytes(self.to_bytes())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> QueryResult:
        """Read a result written by :meth:`save`."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise FormatError(f"cannot read query result {path}: {exc}", path=path) from exc
        try:
            return cls.from_bytes(data)
        except FormatError as exc:
            if exc.path is not None:
                raise
            raise type(exc)(str(exc), path=path) from exc

    # ------------------------------------------------------------------ AnnData (optional extra)
    def to_anndata(self, level: str = "sig", *, x: str | None = None, query_info: pd.DataFrame | None = None) -> Any:
        """One level as an ``anndata.AnnData``: queries x rows, a layer per metric, metadata in ``var``,
        query fields in ``obs`` (+ ``query_info`` columns, e.g. ``DEQueries.table()``); see
        :mod:`opencmap.query.result_anndata`. Needs ``anndata``."""
        from opencmap.query.result_anndata import result_to_anndata

        return result_to_anndata(self, level, x=x, query_info=query_info)

    def write_h5ad(self, path: str | os.PathLike[str], *, level: str = "sig", query_info: pd.DataFrame | None = None) -> Path:
        """Write :meth:`to_anndata` of ``level`` as an ``.h5ad`` file (atomically); returns ``path``."""
        from opencmap.io.h5ad import write_h5ad

        return write_h5ad(self.to_anndata(level, query_info=query_info), path)


def _provenance_from_header(header: Mapping[str, Any]) -> dict[str, Any]:
    """The ``provenance`` of a stored result (``{}`` for results stored before it existed)."""
    out: dict[str, Any] = dict(header.get("provenance") or {})
    per_query = [entry.get("provenance") for entry in header.get("queries", [])]
    if any(p for p in per_query):
        out["queries"] = [dict(p or {}) for p in per_query]
    return out
