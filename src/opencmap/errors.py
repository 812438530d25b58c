"""The opencmap exception and warning tree.

Every error opencmap raises for bad input or bad files is an :class:`OpenCMapError`, so callers
can catch one type. Messages say *what* was wrong, *where* (file, line, HDF5 node, field, gene or
id) and *what to do*.

::

    OpenCMapError
    ├── FormatError            a file does not follow its format (GCT, GCTX, GMT, GRP, LXB, tables)
    │   └── VersionError       a file or store was written by a newer format version
    ├── ValidationError        in-memory data is inconsistent (shapes, duplicate ids, dtypes)
    │   ├── IdNotFoundError    ids asked for are not present (also a KeyError)
    │   ├── GeneSetError       a query gene set is unusable (empty, too small/large, overlapping)
    │   └── PCLError           perturbagen classes (PCLs) name no perturbagen of the store
    ├── StoreError             a reference store is missing, corrupt or incompatible
    │   └── StoreCorruptError  a store file does not match its checksum or hashes (refused)
    ├── PipelineError          a processing step cannot run on its input (no vehicles, no replicates)
    ├── QueryError             a query cannot be run as asked
    ├── ConfigError            bad parameters or options
    ├── DiskSpaceError         too little free disk for what is about to be written
    ├── BackendError           a backend cannot run the work: lost or duplicated a task's result,
    │   │                      a cluster's workers died, or the ``dask`` extra is missing
    │   └── SchedulerUnreachableError  no Dask scheduler answers at the address given
    └── FetchError             a release file cannot be downloaded (network, server, unknown release)
        └── ChecksumError      a downloaded file does not match its published checksum or size

    OpenCMapWarning            (UserWarning) something was dropped or adjusted, e.g. unknown genes
    ├── GeneIdentityWarning    a query gene was not taken as written
    │   ├── GeneMappingWarning     mapped by Ensembl id, previous symbol, alias or a case change
    │   ├── UnknownGeneWarning     not a gene of the store, or outside the feature space: not used
    │   └── AmbiguousGeneWarning   a name of several genes: not used (candidates listed)
    ├── OneSidedQueryWarning   a query was scored on one tail only (es_tail up/down)
    ├── TauUnavailableWarning  tau left empty: no background of the query's kind (tail, metric)
    ├── BackgroundMismatchWarning  tau read from a background that is stale or not of the query's kind
    ├── UndefinedScoreWarning  scores left NaN (e.g. every set gene of a signature has weight 0)
    ├── PCLWarning             PCL members or classes left out (not perturbagens of the store)
    └── DESelectionWarning     rows of a DE table set aside (missing values, repeats, unmapped genes)
"""

from __future__ import annotations

from os import PathLike
from typing import Any

__all__ = [
    "OpenCMapError",
    "FormatError",
    "VersionError",
    "ValidationError",
    "IdNotFoundError",
    "GeneSetError",
    "StoreError",
    "StoreCorruptError",
    "PipelineError",
    "QueryError",
    "ConfigError",
    "DiskSpaceError",
    "BackendError",
    "SchedulerUnreachableError",
    "UncheckedStoreWarning",
    "StoreDiskSpaceError",
    "FetchError",
    "ChecksumError",
    "OpenCMapWarning",
    "GeneIdentityWarning",
    "GeneMappingWarning",
    "UnknownGeneWarning",
    "AmbiguousGeneWarning",
    "OneSidedQueryWarning",
    "TauUnavailableWarning",
    "BackgroundMismatchWarning",
    "UndefinedScoreWarning",
    "PCLError",
    "PCLWarning",
    "DESelectionWarning",
]


class OpenCMapError(Exception):
    """Base class of every error opencmap raises for bad input, files or options."""


class FormatError(OpenCMapError):
    """A file does not follow its format.

    Parameters
    ----------
    message:
        What is wrong and what to do about it.
    path:
        The file concerned, if any.
    line:
        1-based line number in a text file, if known.
    node:
        HDF5 node (e.g. ``/0/META/ROW/id``), if the file is HDF5.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | PathLike[str] | None = None,
        line: int | None = None,
        node: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.node = node
        where = []
        if self.path is not None:
            where.append(self.path)
        if line is not None:
            where.append(f"line {line}")
        if node is not None:
            where.append(f"node {node}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)


class VersionError(FormatError):
    """A file or store was written by a newer, unsupported format version."""


class ValidationError(OpenCMapError, ValueError):
    """In-memory data is inconsistent: shapes that disagree, duplicate ids, wrong dtypes."""


class IdNotFoundError(ValidationError, KeyError):
    """Ids that were asked for are not present."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class GeneSetError(ValidationError):
    """A query gene set is unusable: empty, too small or large, or overlapping up/down."""


class PCLError(ValidationError):
    """Perturbagen classes (PCLs) are unusable: no member is a perturbagen of the store."""


class StoreError(OpenCMapError):
    """A reference store is missing, corrupt, or incompatible with this version."""


class StoreCorruptError(StoreError):
    """A store file does not match the checksum or tile hashes it was written with: what was read
    from it must not be used. The message names the file and the rows/columns, and what to do."""

    #: the whole report (:class:`opencmap.io.store.verify.VerifyReport`) when raised by ``Store.verify``
    report: Any = None

    def __init__(self, message: str, *, path: str | PathLike[str] | None = None):
        super().__init__(message)
        #: the corrupt file (the first, when raised by ``Store.verify``)
        self.path = None if path is None else str(path)


class PipelineError(OpenCMapError):
    """A processing step cannot run on its input (e.g. no vehicle controls for ZSVC)."""


class QueryError(OpenCMapError):
    """A connectivity query cannot be run as asked."""


class ConfigError(OpenCMapError, ValueError):
    """Bad parameters or options."""


class DiskSpaceError(OpenCMapError):
    """Too little free disk for a download, a decompression or a store; nothing was written."""


class BackendError(OpenCMapError):
    """A backend (:mod:`opencmap.backends`) cannot run the work: it lost or duplicated a task's
    result (nothing it returned is used; run it again and report the backend's fault), a
    cluster's workers kept dying on a task, or the optional ``dask`` extra is not installed."""


class SchedulerUnreachableError(BackendError):
    """No Dask scheduler answered at the address given (within the connection timeout).

    Attributes
    ----------
    address:
        The scheduler address that was tried (e.g. ``tcp://10.0.0.5:8786``).
    """

    def __init__(self, message: str, *, address: str) -> None:
        self.address = address
        super().__init__(message)


class StoreDiskSpaceError(DiskSpaceError, StoreError):
    """The disk filled up while a reference store was written; the store is as it was before."""


class FetchError(OpenCMapError):
    """A release file cannot be downloaded: unknown release or file, server or network failure."""


class ChecksumError(FetchError):
    """A downloaded file does not match its published checksum (or its announced size).

    The partial download has been removed; fetching again downloads it from the start.
    """

    def __init__(self, message: str, *, path: str | PathLike[str] | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(message)


class OpenCMapWarning(UserWarning):
    """Something was dropped or adjusted on the user's behalf (e.g. unknown genes in a set)."""


class UncheckedStoreWarning(OpenCMapWarning):
    """A reference store written without chunk checksums (format version 1): reads of it are not
    checked against corruption (``opencmap store info --verify`` checks it whole; a rebuild adds them)."""


class GeneIdentityWarning(OpenCMapWarning):
    """A query gene was not taken as written (base of the gene identity warnings)."""


class GeneMappingWarning(GeneIdentityWarning):
    """Query genes were mapped to a store gene by Ensembl id, previous symbol, alias or case change."""


class UnknownGeneWarning(GeneIdentityWarning):
    """Query genes were not used: unknown to the store, or outside the queried feature space."""


class AmbiguousGeneWarning(GeneIdentityWarning):
    """Query genes were not used: each is a name of several genes (the candidates are listed)."""


class OneSidedQueryWarning(OpenCMapWarning):
    """A query was scored on one tail only (only up or only down genes, or ``es_tail`` up/down):
    the score is ES_up or -ES_dn (cmapM ``es_tail``), not WTCS, and its tau needs a background
    built from queries of the same tail."""


class TauUnavailableWarning(OpenCMapWarning):
    """tau was left empty (NaN / absent) for some queries: the store has no background of their
    kind (tail and metric); ``opencmap store background --tail ...`` builds it."""


class BackgroundMismatchWarning(OpenCMapWarning):
    """tau was read from a background that does not fully describe the store or the query
    (e.g. built before signatures were appended)."""


class UndefinedScoreWarning(OpenCMapWarning):
    """Some scores are undefined and left NaN (e.g. every set gene of a signature has weight 0,
    as cmapM); NCS, tau, FDR and summaries skip them."""


class PCLWarning(OpenCMapWarning):
    """PCL members that are no perturbagen of the store, or classes too small to summarise, were left out."""


class DESelectionWarning(OpenCMapWarning):
    """Rows of a differential-expression table were set aside (missing values, repeats, unmapped genes)."""
