"""The reference store, as the query layer imports it: the store's code lives in
:mod:`opencmap.io.store` (format, reader, writer, checksums, backgrounds); this module re-exports
its names where users import them (``from opencmap.query.store import open_store``)."""

from __future__ import annotations

from opencmap.io.store import *  # noqa: F403
from opencmap.io.store import BYTES_PER_GENE, NpyOut, SignatureSource, StoreSegment  # noqa: F401 - importable here too

__all__ = [
    "STORE_FORMAT",
    "estimate_store_bytes",
    "check_disk",
    "STORE_FORMAT_VERSION",
    "Store",
    "FeatureSpace",
    "build_store",
    "append_store",
    "compact_store",
    "open_store",
    "prefetch_columns",
    "cleanup_store",
    "store_writer",
]
