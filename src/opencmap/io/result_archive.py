"""Result archive: the files of a query result, their names, and the results folder.

One layout serves every interface: the CLI's ``--out`` folder (:meth:`QueryResult.write
<opencmap.query.result.QueryResult.write>`), the API's per-file downloads and its download-all
archive. Its files:

==========================  =====================================================================
``queries.tsv``             one row per query: genes used, unknown, dropped, tail, FDR null
``notes.txt``               what the result used, one readable line each (``QueryResult.report``)
``describe.json``           the same facts as structured data (``QueryResult.describe``)
``<level>.tsv``             long table of a level: one row per (query, row), every metric
``<level>.parquet``         the same as Parquet (``format="parquet"``)
``<level>_<metric>.gctx``   one metric of a level as a matrix: rows of the level x queries
``<level>.h5ad``            one level as AnnData (``format="h5ad"``, needs ``anndata``)
==========================  =====================================================================

Matrix names join the level and the metric with one underscore, as CMap's own result files do
(``ns_pert_summary.gctx``). The split is unambiguous because the levels are a fixed set of which
none is another's prefix followed by ``_`` (:func:`parse_file_name`). Earlier API versions named
matrices ``<level>__<metric>.gctx``; :func:`parse_file_name` still reads those names.

A whole result is also kept as one file (the API's job store, ``QueryResult.save``):
:func:`pack_result` / :func:`unpack_result` write and read that stored form, one uncompressed ZIP
holding ``header.json`` (``format``, ``format_version``, the result's description and
``stored_levels``), each level's index table as ``<level>/index.parquet``, each metric matrix as
``<level>/<metric>.npy`` and query rows / vectors as ``queries/<i>/<name>.npy``. Readers refuse a
newer ``format_version`` (:class:`~opencmap.errors.VersionError`).

This module never imports the query layer: it writes any object with the methods of a
``QueryResult`` (``levels``, ``level``, ``query_table``, ``to_frame``, ``matrix``, ``report``,
``describe``, ``to_anndata``; the folder writers call ``write_file``, which is
:func:`write_result_file`).
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opencmap.core.schema import LEVELS
from opencmap.errors import ConfigError, FormatError, IdNotFoundError, ValidationError
from opencmap.io.versions import check_format_version

__all__ = [
    "FORMATS",
    "LEVELS",
    "FOLDER_MARKERS",
    "PROVENANCE_FILES",
    "ResultFile",
    "matrix_file_name",
    "parse_file_name",
    "result_files",
    "write_result_file",
    "write_result_folder",
    "write_result_zip",
    "pack_result",
    "unpack_result",
    "RESULT_FORMAT_VERSION",
]

#: result levels, in the order results hold them
#: version of the stored form (:func:`pack_result`)
RESULT_FORMAT_VERSION = 1
_FORMAT_NAME = "opencmap-query-result"
#: file formats of a results folder
FORMATS = ("tsv", "parquet", "gctx", "h5ad")
#: what the result used, written beside its tables
PROVENANCE_FILES = ("notes.txt", "describe.json")
#: files every results folder holds (``--overwrite`` replaces only folders with one of them)
FOLDER_MARKERS = ("describe.json", "queries.tsv")

_LEVEL_PATTERN = "|".join(sorted(LEVELS, key=len, reverse=True))
# fullmatch: ``$`` would also match before a final newline (a name ending in a newline)
_NAME = re.compile(
    rf"(?P<fixed>queries\.tsv|notes\.txt|describe\.json)"
    rf"|(?P<level>[a-z_]+)\.(?P<ext>tsv|parquet|h5ad)"
    rf"|(?P<glevel>{_LEVEL_PATTERN})__?(?P<metric>[A-Za-z0-9_]+)\.gctx"
)


@dataclass(frozen=True)
class ResultFile:
    """One file of a result: its ``name``, ``format``, the ``level`` and ``metric`` it holds
    (None for the query table and the provenance files) and a one-line ``description``."""

    name: str
    format: str
    level: str | None = None
    metric: str | None = None
    description: str = ""


def matrix_file_name(level: str, metric: str) -> str:
    """The file name of one metric of one level as a GCTX matrix: ``<level>_<metric>.gctx``."""
    return f"{level}_{metric}.gctx"


def parse_file_name(name: str) -> ResultFile:
    """What the file called ``name`` holds; raises :class:`~opencmap.errors.IdNotFoundError` for a
    name that is no result file. Reads the old ``<level>__<metric>.gctx`` matrix names too. The
    level and metric are not checked against a result (see :func:`result_files`)."""
    match = _NAME.fullmatch(name)
    if match is None:
        raise IdNotFoundError(f"{name!r} is not a result file name (e.g. queries.tsv, sig.tsv, {matrix_file_name('sig', 'ncs')})")
    if match.group("fixed"):
        return ResultFile(name, name.rsplit(".", 1)[1])
    if match.group("level"):
        return ResultFile(name, match.group("ext"), level=match.group("level"))
    return ResultFile(name, "gctx", level=match.group("glevel"), metric=match.group("metric"))


def result_files(result: Any, formats: Sequence[str] = ("tsv",), *, levels: Sequence[str] | None = None) -> list[ResultFile]:
    """The files of ``result`` in ``formats`` (see the module docstring), in writing order: the
    query table and provenance files, then per level its table(s) and matrices."""
    for fmt in formats:
        if fmt not in FORMATS:
            raise ConfigError(f"format must be one of {FORMATS}, got {fmt!r}")
    files = [
        ResultFile("queries.tsv", "tsv", description="queries: genes used, unknown and dropped"),
        ResultFile("notes.txt", "txt", description="what the result used, one line each (the job's notes)"),
        ResultFile("describe.json", "json", description="the result's provenance as structured data"),
    ]
    for level in levels or list(result.levels):
        result.level(level)  # refuses a level the result lacks, saying why
        for fmt in formats:
            if fmt == "gctx":
                files += [
                    ResultFile(matrix_file_name(level, metric), "gctx", level, metric, f"{level} x queries matrix of {metric}")
                    for metric in result.levels[level].metrics
                ]
            else:
                what = "AnnData, a layer per metric" if fmt == "h5ad" else "every metric, long table"
                files.append(ResultFile(f"{level}.{fmt}", fmt, level, None, f"{level}: {what}"))
    return files


def write_result_file(result: Any, path: str | os.PathLike[str], *, level: str | None = None, metric: str | None = None) -> Path:
    """Write one file of ``result`` (atomically); returns ``path``.

    No ``level``: the query table (TSV), or, for a file named ``notes.txt`` / ``describe.json``,
    ``result.report()`` / ``result.describe()``. ``level`` alone: the level's long table
    (``result.to_frame``), Parquet when ``path`` ends in ``.parquet``, AnnData when it ends in
    ``.h5ad``, else TSV. ``level`` and ``metric``: that metric as a GCTX matrix (``result.matrix``).
    """
    from opencmap.io.atomic import atomic_write_path
    from opencmap.io.gctx import write_gctx
    from opencmap.io.tables import write_table

    path = Path(path)
    if level is None and path.name in PROVENANCE_FILES:
        text = (
            "".join(f"{line}\n" for line in result.report())
            if path.name == "notes.txt"
            else json.dumps(result.describe(), indent=2, default=str) + "\n"
        )
        with atomic_write_path(path) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
    elif level is None:
        write_table(result.query_table(), path)
    elif metric is not None:
        write_gctx(result.matrix(metric, level=level), path)
    elif path.suffix == ".parquet":
        with atomic_write_path(path) as tmp:
            result.to_frame(level).to_parquet(tmp, index=False)
    elif path.suffix == ".h5ad":
        from opencmap.io.h5ad import write_h5ad

        write_h5ad(result.to_anndata(level), path)
    else:
        write_table(result.to_frame(level), path)
    return path


def write_result_folder(
    result: Any,
    out_dir: str | os.PathLike[str],
    *,
    formats: Sequence[str] = ("tsv",),
    levels: Sequence[str] | None = None,
    overwrite: bool = False,
    overwrite_flag: str = "overwrite=True",
) -> list[Path]:
    """Write :func:`result_files` of ``result`` as a new folder ``out_dir``; returns the paths.

    The folder is written aside and swapped in whole (:func:`opencmap.io.atomic.atomic_write_dir`):
    it never mixes files of two runs, and a failure leaves an earlier folder as it was. A folder
    that exists and is not empty is refused (:class:`~opencmap.errors.ConfigError`) unless
    ``overwrite``, which replaces it whole if it is a results folder (it holds one of
    :data:`FOLDER_MARKERS`); so is a path that is a file. ``overwrite_flag`` is the option named
    in those errors (``--overwrite`` for the CLI).
    """
    from opencmap.io.atomic import atomic_write_dir

    files = result_files(result, formats, levels=levels)
    out = Path(out_dir)
    with atomic_write_dir(out, overwrite=overwrite, flag=overwrite_flag, replaceable=FOLDER_MARKERS) as tmp:
        for f in files:  # through the result's own method (write_result_file), which callers may wrap
            result.write_file(tmp / f.name, level=f.level, metric=f.metric)
    return [out / f.name for f in files]


def write_result_zip(result: Any, archive: str | os.PathLike[str], *, formats: Sequence[str] = ("tsv", "gctx")) -> Path:
    """Every file of ``result`` in ``formats`` as one ZIP archive (deflated, atomically); the
    files are those :func:`write_result_folder` writes, under the same names."""
    import tempfile

    from opencmap.io.atomic import atomic_write_path

    archive = Path(archive)
    with tempfile.TemporaryDirectory(prefix=".opencmap-archive-", dir=archive.parent) as work:
        folder = Path(work) / "files"
        paths = write_result_folder(result, folder, formats=formats)
        with atomic_write_path(archive) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in paths:
                zf.write(path, arcname=path.name)
    return archive


# ---------------------------------------------------------------------------------- stored form
def pack_result(
    description: Mapping[str, Any],
    query_arrays: Sequence[Mapping[str, np.ndarray | None]],
    levels: Sequence[tuple[str, pd.DataFrame, Mapping[str, np.ndarray]]],
    *,
    omit_index: Collection[str] = (),
) -> bytes:
    """The stored form of a result (see the module docstring) as bytes.

    ``description`` is the result's ``describe()``; ``query_arrays`` per query its arrays by name
    (None: not stored); ``levels`` each level's name, index table and metric matrices. Levels
    named in ``omit_index`` store only their row count, not their index table.
    """
    header: dict[str, Any] = {"format": _FORMAT_NAME, "format_version": RESULT_FORMAT_VERSION, **description}
    header["stored_levels"] = []
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for i, arrays in enumerate(query_arrays):
            for key, values in arrays.items():
                if values is not None:
                    zf.writestr(f"queries/{i}/{key}.npy", _npy_bytes(np.asarray(values)))
        for name, index, metrics in levels:
            omitted = name in omit_index
            header["stored_levels"].append({"name": name, "n_rows": len(index), "index": not omitted})
            if not omitted:
                frame = io.BytesIO()
                index.reset_index(drop=True).to_parquet(frame, index=False)
                zf.writestr(f"{name}/index.parquet", frame.getvalue())
            for metric, values in metrics.items():
                zf.writestr(f"{name}/{metric}.npy", _npy_bytes(np.asarray(values)))
        zf.writestr("header.json", json.dumps(header))
    return buf.getvalue()


def unpack_result(
    data: bytes, query_keys: Sequence[str], *, index: Mapping[str, pd.DataFrame] | None = None
) -> tuple[dict[str, Any], list[dict[str, np.ndarray | None]], list[tuple[str, pd.DataFrame, dict[str, np.ndarray]]]]:
    """Read :func:`pack_result` output: ``(header, query arrays, levels)``; per query the arrays
    named ``query_keys`` (None where not stored), per level ``(name, index table, metrics)``.

    ``index`` gives the index tables of levels stored without one; a table whose row count
    differs from the stored one raises :class:`~opencmap.errors.ValidationError`. Raises
    :class:`~opencmap.errors.VersionError` for a newer format version and
    :class:`~opencmap.errors.FormatError` for anything that is not a stored result.
    """
    index = dict(index or {})
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            header = json.loads(zf.read("header.json"))
            if header.get("format") != _FORMAT_NAME:
                raise FormatError(f"not a stored opencmap query result (format {header.get('format')!r})")
            check_format_version(header.get("format_version", 0), RESULT_FORMAT_VERSION, what="query result")
            names = set(zf.namelist())
            arrays = [
                {key: _npy_load(zf.read(f"queries/{i}/{key}.npy")) if f"queries/{i}/{key}.npy" in names else None for key in query_keys}
                for i in range(len(header["queries"]))
            ]
            levels = []
            for lv in header["stored_levels"]:
                name = lv["name"]
                if lv["index"]:
                    frame = pd.read_parquet(io.BytesIO(zf.read(f"{name}/index.parquet")))
                elif name in index:
                    frame = index[name]
                    if len(frame) != lv["n_rows"]:
                        raise ValidationError(
                            f"level {name!r} of the stored result has {lv['n_rows']} rows but the index table "
                            f"given for it has {len(frame)}"
                        )
                else:
                    raise ValidationError(f"level {name!r} was stored without its index table; pass it as index={{{name!r}: ...}}")
                levels.append((name, frame, {m: _npy_load(zf.read(f"{name}/{m}.npy")) for m in header["metrics"][name]}))
    except (zipfile.BadZipFile, KeyError, ValueError, json.JSONDecodeError) as exc:
        if isinstance(exc, ValidationError):
            raise
        raise FormatError(f"stored query result is damaged or incomplete ({exc}); re-run the query") from exc
    return header, arrays, levels


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def _npy_load(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)
