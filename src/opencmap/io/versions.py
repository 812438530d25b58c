"""One check for every format opencmap writes: a file of a newer format version is refused.

Each format carries a version (store manifest, τ backgrounds, FDR null cache, query results, job
database, fetch manifest, pipeline run folder and parameters, synthetic-compendium manifest,
inference model, GCTX). Readers call :func:`check_format_version`, which raises
:class:`~opencmap.errors.VersionError` with one message shape::

    <path>: <what> format version N is newer than this opencmap supports (<= M): it was written
    by a newer opencmap; upgrade opencmap

Older versions pass (each reader decides how it reads them). Where a caller's users caught a more
specific error before this helper existed (``StoreError`` for the job database, ``ConfigError``
for pipeline parameters and run folders, ``FetchError`` for the fetch manifest), ``also=`` raises
a :class:`VersionError` that is that error too, so both ``except`` clauses keep working.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from typing import Any

from opencmap.errors import ConfigError, FetchError, FormatError, OpenCMapError, StoreError, VersionError

__all__ = ["check_format_version", "format_version_of"]


class _StoreVersionError(VersionError, StoreError):
    """A newer format version of a store-like file (a :class:`StoreError` too)."""


class _ConfigVersionError(VersionError, ConfigError):
    """A newer format version of a run folder or parameter set (a :class:`ConfigError` too)."""


class _FetchVersionError(VersionError, FetchError):
    """A newer format version of a fetch manifest (a :class:`FetchError` too)."""


_ALSO: dict[type[OpenCMapError], type[VersionError]] = {
    StoreError: _StoreVersionError,
    ConfigError: _ConfigVersionError,
    FetchError: _FetchVersionError,
}

Version = int | tuple[int, ...]


def format_version_of(value: Any, *, what: str, path: str | PathLike[str] | None = None, node: str | None = None) -> int:
    """A stored format version as an int (``3``, ``"3"``, ``3.0``); anything else is a
    :class:`FormatError` naming the file."""
    try:
        number = float(value)
        if not number.is_integer():
            raise ValueError
        return int(number)
    except (TypeError, ValueError):
        raise FormatError(f"{what} format version {value!r} is not a whole number; the file is damaged", path=path, node=node) from None


def _text(version: Version) -> str:
    return ".".join(str(v) for v in version) if isinstance(version, Sequence) else str(version)


def check_format_version(
    found: Any,
    supported: Version,
    *,
    what: str,
    path: str | PathLike[str] | None = None,
    node: str | None = None,
    shown: tuple[str, str] | None = None,
    fix: str = "upgrade opencmap",
    also: type[OpenCMapError] | None = None,
) -> Version:
    """Refuse a format version newer than ``supported``; return it (as an int, or a tuple for
    dotted versions) otherwise.

    Parameters
    ----------
    found:
        The version stored in the file (an int, or text/float holding one; a tuple of ints for a
        dotted version such as GCTX's ``(1, 0)``).
    supported:
        The newest version this opencmap reads.
    what:
        The format's name in the message (``"store"``, ``"τ background"``, ``"job database"``).
    path, node:
        The file (and HDF5 node) that holds the version, named in the message.
    shown:
        How to print ``(found, supported)`` when plain numbers would mislead (``("GCTX2.0", "GCTX1.0")``).
    fix:
        What to do, after "it was written by a newer opencmap; ".
    also:
        ``StoreError``, ``ConfigError`` or ``FetchError``: the raised :class:`VersionError` is that too.
    """
    version: Version = found if isinstance(found, tuple) else format_version_of(found, what=what, path=path, node=node)
    if version > supported:  # type: ignore[operator]  # int with int, tuple with tuple
        got, ours = shown or (_text(version), _text(supported))
        cls = VersionError if also is None else _ALSO[also]
        raise cls(
            f"{what} format version {got} is newer than this opencmap supports (<= {ours}): it was written by a newer "
            f"opencmap; {fix}",
            path=path,
            node=node,
        )
    return version
