"""Storage of inference models (the parts of :class:`opencmap.pipeline.infer.InferenceModel`).

This module only reads and writes the model's parts (ids, weights, quality table, metadata);
:func:`opencmap.pipeline.infer.save_inference_model` / ``load_inference_model`` turn them into
the model object, so storage never imports the engine layer.

File format ``opencmap.inference_model``, version 1 (HDF5)::

    /                      attrs: format = "opencmap.inference_model"
                                  format_version = 1
                                  header = JSON {"clip": [lo, hi], "info": {...},
                                                 "n_landmarks": L, "n_dependents": D,
                                                 "weights_dtype": "float32"|"float64"}
    /landmark_ids          (L,) UTF-8 strings, the weight-column order (after the intercept)
    /dependent_ids         (D,) UTF-8 strings
    /weights               (D, 1 + L) float; column 0 = intercept
    /fit_quality/<column>  (D,) float64 per quality measure (r_train, r_holdout, rmse_holdout);
                           attrs: columns = JSON list giving their order
    /landmark_meta/<field> (L,) UTF-8 strings, row metadata of the landmarks
    /dependent_meta/<field>(D,) UTF-8 strings, row metadata of the inferred genes

Writes are atomic. Readers refuse files of a newer ``format_version`` (:class:`VersionError`)
and report structural problems as :class:`FormatError` naming the HDF5 node.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from opencmap.errors import FormatError
from opencmap.io.atomic import atomic_write_path
from opencmap.io.versions import check_format_version

__all__ = ["INFER_MODEL_FORMAT", "INFER_MODEL_VERSION", "write_inference_model", "read_inference_model"]

INFER_MODEL_FORMAT = "opencmap.inference_model"
INFER_MODEL_VERSION = 1

_STR = h5py.string_dtype("utf-8")


def _write_strings(group: h5py.Group, name: str, values: Any) -> None:
    arr = np.array(["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values], dtype=object)
    group.create_dataset(name, data=arr, dtype=_STR)


def _write_meta(parent: h5py.File, name: str, meta: pd.DataFrame, n: int) -> None:
    group = parent.create_group(name)
    if meta is None or meta.shape[1] == 0:
        return
    if len(meta) != n:
        raise ValueError(f"{name} has {len(meta)} rows for {n} ids")
    group.attrs["columns"] = json.dumps([str(c) for c in meta.columns])
    for i, col in enumerate(meta.columns):
        _write_strings(group, f"c{i}", meta[col].astype(object).tolist())


def write_inference_model(
    path: str | PathLike[str],
    *,
    landmark_ids: Sequence[str],
    dependent_ids: Sequence[str],
    weights: np.ndarray,
    fit_quality: pd.DataFrame,
    landmark_meta: pd.DataFrame | None = None,
    dependent_meta: pd.DataFrame | None = None,
    clip: tuple[float, float] = (0.0, 15.0),
    info: dict[str, Any] | None = None,
    weights_dtype: str = "float32",
) -> Path:
    """Write an inference model's parts to ``path`` (HDF5, format above); returns the path.

    ``weights_dtype`` is ``float32`` (default, half the size; prediction error ~1e-6) or ``float64``.
    """
    if weights_dtype not in ("float32", "float64"):
        raise ValueError("weights_dtype must be 'float32' or 'float64'")
    path = Path(path)
    landmark_ids = [str(i) for i in landmark_ids]
    dependent_ids = [str(i) for i in dependent_ids]
    w = np.asarray(weights)
    if w.shape != (len(dependent_ids), len(landmark_ids) + 1):
        raise ValueError(f"weights {w.shape} do not match {len(dependent_ids)} genes x (1 + {len(landmark_ids)} landmarks)")
    header = {
        "clip": [float(v) for v in clip],
        "info": info or {},
        "n_landmarks": len(landmark_ids),
        "n_dependents": len(dependent_ids),
        "weights_dtype": weights_dtype,
    }
    with atomic_write_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = INFER_MODEL_FORMAT
            f.attrs["format_version"] = INFER_MODEL_VERSION
            f.attrs["header"] = json.dumps(header, default=str)
            _write_strings(f, "landmark_ids", landmark_ids)
            _write_strings(f, "dependent_ids", dependent_ids)
            f.create_dataset("weights", data=w.astype(weights_dtype))
            q = f.create_group("fit_quality")
            fq = fit_quality.reindex(dependent_ids)
            q.attrs["columns"] = json.dumps([str(c) for c in fq.columns])
            for col in fq.columns:
                q.create_dataset(str(col), data=fq[col].to_numpy(dtype=np.float64))
            _write_meta(f, "landmark_meta", landmark_meta, len(landmark_ids))
            _write_meta(f, "dependent_meta", dependent_meta, len(dependent_ids))
    return path


def _node(f: h5py.File, name: str, path: Path) -> Any:
    if name not in f:
        raise FormatError(f"missing {name}; not a complete opencmap inference model", path=path, node=f"/{name}")
    return f[name]


def _read_strings(ds: h5py.Dataset) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in ds[()]]


def _read_meta(f: h5py.File, name: str, ids: list[str], path: Path) -> pd.DataFrame:
    index = pd.Index(ids, dtype=object, name="rid")
    if name not in f or "columns" not in f[name].attrs:
        return pd.DataFrame(index=index)
    group = f[name]
    columns = json.loads(group.attrs["columns"])
    data = {}
    for i, col in enumerate(columns):
        values = _read_strings(_node(group, f"c{i}", path)) if f"c{i}" in group else None
        if values is None or len(values) != len(ids):
            raise FormatError(f"metadata field {col!r} has the wrong length", path=path, node=f"/{name}/c{i}")
        data[col] = pd.Series(values, index=index, dtype=object)
    return pd.DataFrame(data, index=index)


def read_inference_model(path: str | PathLike[str]) -> dict[str, Any]:
    """Read the parts written by :func:`write_inference_model`.

    Returns a dict with ``landmark_ids``, ``dependent_ids`` (tuples), ``weights`` (float64),
    ``fit_quality``, ``landmark_meta``, ``dependent_meta`` (DataFrames), ``clip`` and ``info``.
    """
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise FormatError(f"not an HDF5 file ({exc}); expected an opencmap inference model", path=path) from None
    with f:
        fmt = f.attrs.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode()
        if fmt != INFER_MODEL_FORMAT:
            raise FormatError(f"format is {fmt!r}, not {INFER_MODEL_FORMAT!r}", path=path, node="/")
        check_format_version(f.attrs.get("format_version", 0), INFER_MODEL_VERSION, what="inference model", path=path, node="/")
        try:
            header = json.loads(f.attrs["header"])
        except (KeyError, ValueError) as exc:
            raise FormatError(f"unreadable header ({exc})", path=path, node="/") from None
        lm = _read_strings(_node(f, "landmark_ids", path))
        dep = _read_strings(_node(f, "dependent_ids", path))
        weights = np.asarray(_node(f, "weights", path)[()], dtype=np.float64)
        if weights.shape != (len(dep), len(lm) + 1):
            raise FormatError(
                f"weights have shape {weights.shape}, expected ({len(dep)}, {len(lm) + 1})", path=path, node="/weights"
            )
        quality = pd.DataFrame(index=pd.Index(dep, dtype=object, name="rid"))
        if "fit_quality" in f:
            group = f["fit_quality"]
            names = json.loads(group.attrs["columns"]) if "columns" in group.attrs else sorted(group)
            for name in names:
                values = np.asarray(_node(group, name, path)[()], dtype=np.float64)
                if values.shape != (len(dep),):
                    raise FormatError("fit quality has the wrong length", path=path, node=f"/fit_quality/{name}")
                quality[name] = values
        return {
            "landmark_ids": tuple(lm),
            "dependent_ids": tuple(dep),
            "weights": weights,
            "fit_quality": quality,
            "landmark_meta": _read_meta(f, "landmark_meta", lm, path),
            "dependent_meta": _read_meta(f, "dependent_meta", dep, path),
            "clip": tuple(float(v) for v in header.get("clip", (0.0, 15.0))),
            "info": dict(header.get("info", {})),
        }
