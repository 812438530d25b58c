"""Query results as AnnData (queries x rows of a level), for the scverse ecosystem.

:func:`result_to_anndata` lays one level of a :class:`~opencmap.query.result.QueryResult` out as
an ``anndata.AnnData``:

- ``obs``: one row per query (index = query name): the result's query table (genes kept, unknown
  and out-of-space genes, and any other per-query field) plus ``up_genes`` / ``down_genes``;
- ``var``: one row per signature / perturbagen / PCL of the level (index = its id), the level's
  metadata (``sig_info`` fields at ``sig``);
- ``layers``: every metric of the level (``wtcs``, ``ncs``, ``tau``, ``fdr_q``, ...), each a
  float32 (n_queries, n_rows) matrix, the transpose of ``LevelResult.metrics[name]``;
- ``X``: the level's default metric (``tau``, else ``ncs``, else the raw score), named in
  ``uns["opencmap"]["x_metric"]``;
- ``uns["opencmap"]``: format name and version, level, method, space, ``x_metric``, the result's
  notes, and ``describe_json`` (the JSON of :meth:`QueryResult.describe`: params, suggestions).

Text metadata columns that mix strings with other values are written as strings, so that
``anndata.write_h5ad`` can store them; everything else is kept as is.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from opencmap.errors import IdNotFoundError, ValidationError

if TYPE_CHECKING:
    from opencmap.query.result import QueryResult

__all__ = ["result_to_anndata", "ANNDATA_FORMAT", "ANNDATA_FORMAT_VERSION"]

ANNDATA_FORMAT = "opencmap-query-result-anndata"
ANNDATA_FORMAT_VERSION = 1


def _storable(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns holding anything but strings and missing values become strings (missing kept)."""
    out = frame.copy()
    for col in out.columns:
        values = out[col]
        if values.dtype == object:
            present = values.dropna()
            if not all(isinstance(v, str) for v in present):
                out[col] = values.map(lambda v: v if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
    out.columns = [str(c) for c in out.columns]
    return out


def _obs(result: QueryResult) -> pd.DataFrame:
    table = result.query_table()
    names = [str(n) for n in result.query_names]
    obs = table.drop(columns=["query"]) if "query" in table.columns else table
    obs = obs.reset_index(drop=True)
    obs["up_genes"] = [",".join(map(str, getattr(q, "up_genes", ()))) for q in result.queries]
    obs["down_genes"] = [",".join(map(str, getattr(q, "down_genes", ()))) for q in result.queries]
    obs.index = pd.Index(names, dtype=object, name="query")
    return _storable(obs)


def result_to_anndata(result: QueryResult, level: str = "sig", *, x: str | None = None, query_info: pd.DataFrame | None = None) -> Any:
    """One level of ``result`` as an ``anndata.AnnData`` (see the module docstring).

    ``x`` names the metric placed in ``X`` (default: the level's default metric). ``query_info``
    adds per-query columns to ``obs`` (a table with a ``query`` column or indexed by query name,
    e.g. ``DEQueries.table()``: what was taken from a DE table and why); its columns must not
    repeat ``obs``'s. Needs the optional ``anndata`` package.
    """
    from opencmap.io.h5ad import import_anndata

    anndata = import_anndata()
    lv = result.level(level)
    x_metric = x or result.default_metric(level)
    if x_metric not in lv.metrics:
        raise IdNotFoundError(f"no metric {x_metric!r} at level {level!r} (has {sorted(lv.metrics)})")
    var = lv.index.iloc[:, 1:].reset_index(drop=True)
    var.index = pd.Index([str(i) for i in lv.ids], dtype=object, name=str(lv.index.columns[0]))
    layers = {name: np.ascontiguousarray(np.asarray(values).T) for name, values in lv.metrics.items()}
    uns = {
        "opencmap": {
            "format": ANNDATA_FORMAT,
            "format_version": ANNDATA_FORMAT_VERSION,
            "level": level,
            "method": result.method,
            "space": result.space,
            "x_metric": x_metric,
            "notes": [str(n) for n in result.notes],
            "describe_json": json.dumps(result.describe(), default=str),
        }
    }
    if not uns["opencmap"]["notes"]:
        del uns["opencmap"]["notes"]  # an empty list has no h5ad type; absent = no notes
    obs = _obs(result)
    if query_info is not None:
        extra = query_info.set_index("query") if "query" in query_info.columns else query_info
        extra = extra.copy()
        extra.index = extra.index.astype(str)
        clash = sorted(set(map(str, extra.columns)) & set(obs.columns))
        if clash:
            raise ValidationError(f"query_info columns {clash} are already obs columns; rename them")
        unknown = sorted(set(extra.index) - set(obs.index))
        if unknown:
            raise IdNotFoundError(f"query_info names queries that are not in the result: {unknown[:10]}")
        obs = obs.join(_storable(extra), how="left")
    return anndata.AnnData(X=layers[x_metric].copy(), obs=obs, var=_storable(var), layers=layers, uns=uns)
