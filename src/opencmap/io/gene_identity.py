"""Read gene identity tables: the bundled ``gene_identity_v1.tsv.gz`` or a user's own.

The bundled table covers the 12,328 L1000 genes (and the genes that share a name with one); its
sources, date and licence are in ``opencmap/datasets/resources/README.md`` and in its ``#``
header lines. :func:`bundled_gene_identity` reads it once per process.
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import re
from importlib import resources

import pandas as pd

from opencmap.core.gene_identity import GeneIdentity
from opencmap.errors import FormatError

__all__ = ["read_gene_identity", "bundled_gene_identity", "BUNDLED_GENE_IDENTITY"]

#: file name of the bundled table (in ``opencmap/datasets/resources``)
BUNDLED_GENE_IDENTITY = "gene_identity_v1.tsv.gz"
_VERSION = re.compile(r"gene identity table v(\S+?):")


def _parse(text: str, where: str) -> GeneIdentity:
    lines = text.splitlines()
    header = [ln[1:].strip() for ln in lines if ln.startswith("#")]
    n_header = 0
    while n_header < len(lines) and lines[n_header].startswith("#"):
        n_header += 1
    try:
        table = pd.read_csv(io.StringIO("\n".join(lines[n_header:])), sep="\t", dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise FormatError(f"not a gene identity table: {exc}", path=where) from exc
    missing = {"entrez_id", "symbol"} - set(table.columns)
    if missing:
        raise FormatError(f"gene identity table lacks column(s) {sorted(missing)}", path=where, line=n_header + 1)
    version = next((m.group(1) for h in header if (m := _VERSION.search(h))), "")
    return GeneIdentity.from_frame(table, version=version, source="; ".join(header[1:]) or where)


def read_gene_identity(path: str | os.PathLike[str]) -> GeneIdentity:
    """A gene identity table from a TSV (optionally gzipped) with the bundled table's columns."""
    path = os.fspath(path)
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
            text = fh.read()
    except OSError as exc:
        raise FormatError(f"cannot read gene identity table: {exc}", path=path) from exc
    return _parse(text, str(path))


@functools.cache
def bundled_gene_identity() -> GeneIdentity:
    """The bundled L1000 gene identity table (read once; the object is shared, do not modify it)."""
    ref = resources.files("opencmap").joinpath("datasets", "resources", BUNDLED_GENE_IDENTITY)
    with gzip.open(io.BytesIO(ref.read_bytes()), "rt", encoding="utf-8") as fh:
        return _parse(fh.read(), f"opencmap/datasets/resources/{BUNDLED_GENE_IDENTITY}")
