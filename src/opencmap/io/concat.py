"""Concatenate GCT/GCTX files along columns (default) or rows.

The other axis must hold the same ids in every file (in any order: they are aligned to the first
file's order); its metadata is taken from the first file. Metadata of the concatenated axis is
the union of the files' fields (missing where a file lacks a field). Column concatenation into a
``.gctx`` output streams one input at a time through :class:`~opencmap.io.gctx.GCTXWriter`, so
the result may be larger than memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from opencmap.core.gct import GCT
from opencmap.errors import ConfigError, ValidationError
from opencmap.io.gct import read_gct, read_meta, write
from opencmap.io.gctx import GCTXWriter, _axis

__all__ = ["concat_files"]

logger = logging.getLogger(__name__)


def _union_meta(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    combined = pd.concat(frames, axis=0, join="outer", sort=False)
    if combined.index.has_duplicates:
        dup = combined.index[combined.index.duplicated()].unique()[:5].tolist()
        raise ValidationError(f"ids repeated across the inputs: {dup}; each id may appear in one file only")
    return combined


def concat_files(
    inputs: Sequence[str | PathLike[str]],
    output: str | PathLike[str],
    *,
    axis: str = "col",
    progress: Callable[[int, int], None] | None = None,
    **write_options: object,
) -> GCT | None:
    """Concatenate ``inputs`` into ``output`` (format by extension); returns the GCT if built in memory.

    Parameters
    ----------
    axis:
        ``"col"`` to put the files' columns side by side (rows must agree), ``"row"`` to stack rows
        (columns must agree).
    progress:
        Called as ``progress(done, total)`` after each input.
    write_options:
        Passed to the writer (``chunks``, ``compression`` for GCTX; ``precision`` for GCT).

    Raises
    ------
    ValidationError
        The other axis's ids differ between files, or ids repeat along the concatenated axis.
    """
    a = _axis(axis)
    paths = [Path(p) for p in inputs]
    if len(paths) < 1:
        raise ConfigError("concat needs at least one input file")
    other = "row" if a == "col" else "col"
    first_other = read_meta(paths[0], other)
    for p in paths[1:]:
        ids = read_meta(p, other).index
        if len(ids) != len(first_other.index) or not pd.Index(ids).sort_values().equals(first_other.index.sort_values()):
            missing = first_other.index.difference(ids)[:5].tolist()
            extra = pd.Index(ids).difference(first_other.index)[:5].tolist()
            raise ValidationError(
                f"{p}: its {other} ids differ from {paths[0]} ({len(ids)} vs {len(first_other)}; "
                f"missing {missing}, unexpected {extra}); concat needs the same {other} ids in every file"
            )
    along = _union_meta([read_meta(p, a) for p in paths])
    total = len(paths)
    out = Path(output)
    if a == "col" and out.suffix.lower() == ".gctx":
        with GCTXWriter(out, first_other, **write_options) as writer:  # type: ignore[arg-type]
            for i, p in enumerate(paths):
                part = read_gct(p, rid=list(first_other.index))
                writer.append(part.data, along.loc[part.cids])
                if progress is not None:
                    progress(i + 1, total)
        return None
    parts = []
    for i, p in enumerate(paths):
        if a == "col":
            parts.append(read_gct(p, rid=list(first_other.index)).data)
        else:
            parts.append(read_gct(p, cid=list(first_other.index)).data)
        if progress is not None:
            progress(i + 1, total)
    data = np.concatenate(parts, axis=1 if a == "col" else 0) if parts else np.zeros((0, 0), np.float32)
    if a == "col":
        gct = GCT(data, row_meta=first_other, col_meta=along)
    else:
        gct = GCT(data, row_meta=along, col_meta=first_other)
    write(gct, out, **write_options)
    return gct
