"""GMT (gene set collections) and GRP (one id per line) files.

GMT: one set per line, ``name <tab> description <tab> gene <tab> gene ...``. Blank lines are
skipped; empty trailing fields are ignored; ids are kept as strings (Entrez ``780`` stays
``"780"``); a gene repeated within a set is kept once (with an
:class:`~opencmap.errors.OpenCMapWarning`); two sets with the same name are an error.

GRP: one id per line; lines starting with ``#`` are comments; blank lines are skipped; ids are
stripped of surrounding whitespace and kept in file order (repeats kept, as written).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from os import PathLike
from pathlib import Path
from typing import Any

from opencmap.core.genesets import GeneSet
from opencmap.errors import FormatError, GeneSetError, OpenCMapWarning, ValidationError
from opencmap.io.atomic import atomic_write_path

__all__ = ["read_gmt", "write_gmt", "read_grp", "write_grp"]

logger = logging.getLogger(__name__)


def _read_text(path: Path) -> str:
    if not path.exists():
        raise FormatError("file not found; check the path", path=path)
    raw = path.read_bytes()
    if raw.startswith(b"\x89HDF"):
        raise FormatError("is an HDF5 file, not text; expected a GMT/GRP text file", path=path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_gmt(path: str | PathLike[str]) -> list[GeneSet]:
    """Read a GMT file as a list of :class:`~opencmap.core.genesets.GeneSet`, in file order.

    Raises
    ------
    FormatError
        A line without a name/description, or a repeated set name (names the line).
    """
    p = Path(path)
    sets: list[GeneSet] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(_read_text(p).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise FormatError(
                "a GMT line needs at least a name and a description separated by a tab "
                f"(found {line[:60]!r})",
                path=p,
                line=lineno,
            )
        name = fields[0].strip()
        if not name:
            raise FormatError("empty gene set name", path=p, line=lineno)
        if name in seen:
            raise FormatError(
                f"gene set name {name!r} already used on line {seen[name]}; names must be unique", path=p, line=lineno
            )
        seen[name] = lineno
        genes = [g.strip() for g in fields[2:]]
        genes = [g for g in genes if g]
        unique = list(dict.fromkeys(genes))
        if len(unique) != len(genes):
            warnings.warn(
                f"{p}, line {lineno}: gene set {name!r} lists {len(genes) - len(unique)} gene(s) more than once; "
                f"kept once",
                OpenCMapWarning,
                stacklevel=2,
            )
        try:
            sets.append(GeneSet(name, fields[1].strip(), tuple(unique)))
        except GeneSetError as exc:
            raise FormatError(str(exc), path=p, line=lineno) from exc
    logger.debug("read %d gene sets from %s", len(sets), p)
    return sets


def write_gmt(sets: Iterable[GeneSet], path: str | PathLike[str]) -> None:
    """Write gene sets as GMT (atomically). Set names must be unique."""
    sets = list(sets)
    names = [s.name for s in sets]
    for s in sets:
        if not isinstance(s, GeneSet):
            raise ValidationError(f"write_gmt needs GeneSet objects, got {type(s).__name__}")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValidationError(f"gene set names must be unique to write a GMT; repeated: {dup[:10]}")
    with atomic_write_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for s in sets:
            fh.write("\t".join([s.name, s.description, *s.genes]) + "\n")


def read_grp(path: str | PathLike[str]) -> list[str]:
    """Read a GRP file: the ids, in file order, without comments (``#``) and blank lines."""
    p = Path(path)
    ids = []
    for line in _read_text(p).splitlines():
        text = line.strip()
        if text and not text.startswith("#"):
            ids.append(text)
    return ids


def write_grp(ids: Iterable[Any], path: str | PathLike[str]) -> None:
    """Write ids one per line (atomically)."""
    items = [str(i) for i in ids]
    bad = [i for i in items if not i.strip() or any(ch in i for ch in "\n\r") or i.strip().startswith("#")]
    if bad:
        raise ValidationError(f"GRP ids must be non-empty, on one line, and not start with '#': {bad[:5]}")
    with atomic_write_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("".join(f"{i}\n" for i in items))
