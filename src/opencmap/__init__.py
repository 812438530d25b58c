"""opencmap: an open, fast, self-hostable Connectivity Map for LINCS L1000 data.

The public API is small and explicit (see ``__all__``). The most used entry points of the
sub-packages are reachable from here and imported lazily on first use, so ``import opencmap``
stays light; heavy optional dependencies (dask, fastapi) are never imported here.

>>> import opencmap as oc                                              # doctest: +SKIP
>>> gct = oc.read_gct("level5.gctx", cid=["sig1", "sig2"])             # doctest: +SKIP
>>> comp = oc.make_compendium("synthetic", "tiny")                     # doctest: +SKIP
>>> run = oc.run_pipeline(comp.file("level3"), "out", inst_info=comp.file("inst_info"))  # doctest: +SKIP
>>> store = oc.build_store("store", run.level5, sig_info=run.sig_info)  # doctest: +SKIP
>>> oc.run_query(store, up=[...], down=[...]).top(20)                  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

import opencmap._pandas_compat  # noqa: F401  (first: pandas 3 string semantics on pandas 2.3)
from opencmap.core.gct import GCT
from opencmap.errors import (
    ConfigError,
    FormatError,
    GeneSetError,
    IdNotFoundError,
    OpenCMapError,
    OpenCMapWarning,
    PipelineError,
    QueryError,
    StoreError,
    ValidationError,
    VersionError,
)

# name -> module that defines it; resolved on first attribute access (PEP 562)
_LAZY: dict[str, str] = {
    "read_gct": "opencmap.io",
    "read_meta": "opencmap.io",
    "write_gct": "opencmap.io",
    "write_gctx": "opencmap.io",
    "GCTXWriter": "opencmap.io",
    "read_gmt": "opencmap.io",
    "write_gmt": "opencmap.io",
    "read_grp": "opencmap.io",
    "write_grp": "opencmap.io",
    "read_table": "opencmap.io",
    "write_table": "opencmap.io",
    "make_compendium": "opencmap.datasets",
    "open_compendium": "opencmap.datasets",
    "run_pipeline": "opencmap.pipeline.run",
    "build_store": "opencmap.query",
    "open_store": "opencmap.query",
    "build_background": "opencmap.query",
    "run_query": "opencmap.query",
    "Engine": "opencmap.query",
    "run_demo": "opencmap.demo",
}

__all__ = [
    "__version__",
    "GCT",
    "OpenCMapError",
    "FormatError",
    "VersionError",
    "ValidationError",
    "IdNotFoundError",
    "GeneSetError",
    "StoreError",
    "PipelineError",
    "QueryError",
    "ConfigError",
    "OpenCMapWarning",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'opencmap' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
