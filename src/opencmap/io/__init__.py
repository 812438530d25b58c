"""Storage: the only code that opens files (GCT, GCTX, GMT/GRP, tables, stores).

Every writer is atomic (:func:`opencmap.io.atomic.atomic_write_path`). Every format carries a
version; readers refuse newer ones through :func:`opencmap.io.versions.check_format_version`.
The reference store is the :mod:`opencmap.io.store` package (format, reader, writer, checksums,
tau background files).
A query result's files (the results folder, the API's downloads and download-all) have one
layout, written by :mod:`opencmap.io.result_archive`.
"""

from opencmap.io.atomic import atomic_write_path
from opencmap.io.concat import concat_files
from opencmap.io.gct import GCTFileInfo, gct_info, is_gctx, read_gct, read_meta, write, write_gct
from opencmap.io.gctx import GCTXFile, GCTXWriter, read_gctx, write_gctx
from opencmap.io.gmt import read_gmt, read_grp, write_gmt, write_grp
from opencmap.io.tables import read_table, write_table

__all__ = [
    "read_gct",
    "read_gctx",
    "read_meta",
    "write_gct",
    "write_gctx",
    "write",
    "GCTXWriter",
    "GCTXFile",
    "gct_info",
    "GCTFileInfo",
    "is_gctx",
    "read_gmt",
    "write_gmt",
    "read_grp",
    "write_grp",
    "read_table",
    "write_table",
    "concat_files",
    "atomic_write_path",
]
