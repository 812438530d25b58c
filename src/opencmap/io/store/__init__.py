"""The reference store's files: format, reading, writing, checksums and tau background files.

==========================  ============================================================
:mod:`.format`              layout of a store directory, manifest fields, format versions
:mod:`.reader`              :class:`Store` (memory-mapped, checked reads, read-ahead,
                            generations), :func:`open_store`
:mod:`.writer`              :func:`build_store`, :func:`append_store`, :func:`compact_store`,
                            signature sources, positioned writes, writer lock and cleanup
:mod:`.checksums`           whole-file checksums, per-tile hashes (format 3), per-chunk (format 2)
:mod:`.backgrounds`         the tau background files and their commit
:mod:`.verify`              checking every file of a store (``store info --verify``):
                            every tile against its hash, every file against its checksum
==========================  ============================================================

Queries over a store are :mod:`opencmap.query` (which re-exports these names as
:mod:`opencmap.query.store`, where they were before).
"""

from __future__ import annotations

from opencmap.io.store.format import STORE_FORMAT, STORE_FORMAT_VERSION
from opencmap.io.store.reader import FeatureSpace, Store, StoreSegment, open_store, prefetch_columns
from opencmap.io.store.writer import (
    BYTES_PER_GENE,
    NpyOut,
    SignatureSource,
    append_store,
    build_store,
    check_disk,
    cleanup_store,
    compact_store,
    estimate_store_bytes,
    store_writer,
)

__all__ = [
    "STORE_FORMAT",
    "STORE_FORMAT_VERSION",
    "BYTES_PER_GENE",
    "FeatureSpace",
    "NpyOut",
    "SignatureSource",
    "Store",
    "StoreSegment",
    "append_store",
    "build_store",
    "check_disk",
    "cleanup_store",
    "compact_store",
    "estimate_store_bytes",
    "open_store",
    "prefetch_columns",
    "store_writer",
]
