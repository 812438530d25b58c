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
    │   └── GeneSetError       a query gene set is unusable (empty, too small/large, overlapping)
    ├── StoreError             a reference store is missing, corrupt or incompatible
    ├── PipelineError          a processing step cannot run on its input (no vehicles, no replicates)
    ├── QueryError             a query cannot be run as asked
    └── ConfigError            bad parameters or options

    OpenCMapWarning            (UserWarning) something was dropped or adjusted, e.g. unknown genes
    └── DESelectionWarning     rows of a DE table set aside (missing values, repeats, unmapped genes)
"""

from __future__ import annotations

from os import PathLike

__all__ = [
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


class StoreError(OpenCMapError):
    """A reference store is missing, corrupt, or incompatible with this version."""


class PipelineError(OpenCMapError):
    """A processing step cannot run on its input (e.g. no vehicle controls for ZSVC)."""


class QueryError(OpenCMapError):
    """A connectivity query cannot be run as asked."""


class ConfigError(OpenCMapError, ValueError):
    """Bad parameters or options."""


class OpenCMapWarning(UserWarning):
    """Something was dropped or adjusted on the user's behalf (e.g. unknown genes in a set)."""


class DESelectionWarning(OpenCMapWarning):
    """Rows of a differential-expression table were set aside (missing values, repeats, unmapped genes)."""
