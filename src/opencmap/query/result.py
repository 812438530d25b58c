"""Query results: per-level score matrices with metadata, top connections, tables and files.

A :class:`QueryResult` holds, per level (``sig``, ``pert_cell``, ``pert_summary``, ``pcl_cell``,
``pcl_summary``), a :class:`LevelResult`: an index table (one row per signature / perturbagen x
cell / perturbagen / PCL, with its metadata) and metric matrices of shape ``(n_rows, n_queries)``
(e.g. ``wtcs``, ``es_up``, ``ncs``, ``tau``, ``fdr_q``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opencmap.core.gct import GCT
from opencmap.errors import ConfigError, IdNotFoundError

__all__ = ["LevelResult", "QueryResult", "LEVELS"]

LEVELS = ("sig", "pert_cell", "pert_summary", "pcl_cell", "pcl_summary")
_FORMATS = ("tsv", "parquet", "gctx")
_ID_COLUMN = {"sig": "sig_id"}


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

    # ------------------------------------------------------------------ access
    @property
    def query_names(self) -> list[str]:
        return [q.name for q in self.queries]

    def __repr__(self) -> str:
        lv = {k: sorted(v.metrics) for k, v in self.levels.items()}
        return f"QueryResult({len(self.queries)} queries, metric {self.method!r}, space {self.space!r}, levels {lv})"

    def level(self, name: str = "sig") -> LevelResult:
        if name not in self.levels:
            raise IdNotFoundError(f"no level {name!r} in this result (has {sorted(self.levels)})")
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

    def _default_metric(self, level: str) -> str:
        metrics = self.level(level).metrics
        for m in ("tau", "ncs", self.method):
            if m in metrics:
                return m
        return next(iter(metrics))

    def query_table(self) -> pd.DataFrame:
        """One row per query: genes used, unknown and out-of-space genes."""
        return pd.DataFrame([q.summary() for q in self.queries])

    # ------------------------------------------------------------------ tables
    def to_frame(self, level: str = "sig", *, query: int | str | None = None, metadata: bool = True) -> pd.DataFrame:
        """Long table: one row per (query, row of the level) with every metric (+ metadata)."""
        lv = self.level(level)
        qidx = range(len(self.queries)) if query is None else [self._query_index(query)]
        frames = []
        for j in qidx:
            cols: dict[str, Any] = {"query": self.queries[j].name}
            frame = lv.index.reset_index(drop=True).copy() if metadata else lv.index.iloc[:, :1].reset_index(drop=True).copy()
            for name, values in lv.metrics.items():
                frame[name] = values[:, j]
            frame.insert(0, "query", cols["query"])
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

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
        if direction not in ("positive", "negative", "both"):
            raise ConfigError(f"direction must be positive, negative or both, got {direction!r}")
        by = by or self._default_metric(level)
        frame = self.to_frame(level, query=query)
        if by not in frame.columns:
            raise IdNotFoundError(f"no metric {by!r} at level {level!r} (has {sorted(self.level(level).metrics)})")
        values = frame[by].to_numpy(dtype=np.float64)
        keep = np.isfinite(values)
        frame, values = frame[keep], values[keep]
        if direction == "positive":
            key = -values
        elif direction == "negative":
            key = values
        else:
            key = -np.abs(values)
        order = np.argsort(key, kind="stable")[: max(int(n), 0)]
        return frame.iloc[order].reset_index(drop=True)

    def matrix(self, metric: str | None = None, *, level: str = "sig") -> GCT:
        """One metric as a GCT: rows of the level x queries (row metadata = the level's index)."""
        lv = self.level(level)
        metric = metric or self._default_metric(level)
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
    ) -> list[Path]:
        """Write the result into ``out_dir``; returns the files written.

        ``tsv`` / ``parquet``: one long table per level (``<level>.tsv``); ``gctx``: one matrix per
        level and metric (``<level>_<metric>.gctx``, rows x queries). Always ``queries.tsv``.
        """
        from opencmap.io import write_gctx, write_table
        from opencmap.io.atomic import atomic_write_path

        if format not in _FORMATS:
            raise ConfigError(f"format must be one of {_FORMATS}, got {format!r}")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        qpath = out / "queries.tsv"
        write_table(self.query_table(), qpath)
        written.append(qpath)
        for level in levels or list(self.levels):
            if format == "gctx":
                for metric in self.level(level).metrics:
                    path = out / f"{level}_{metric}.gctx"
                    write_gctx(self.matrix(metric, level=level), path)
                    written.append(path)
                continue
            frame = self.to_frame(level)
            path = out / f"{level}.{format}"
            if format == "tsv":
                write_table(frame, path)
            else:
                with atomic_write_path(path) as tmp:
                    frame.to_parquet(tmp, index=False)
            written.append(path)
        return written
