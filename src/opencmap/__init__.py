"""opencmap: an open, fast, self-hostable Connectivity Map for LINCS L1000 data.

The public API is small and explicit (see ``__all__``); heavy optional dependencies
(dask, fastapi) are never imported here.
"""

from __future__ import annotations

__version__ = "0.1.0"

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
]
