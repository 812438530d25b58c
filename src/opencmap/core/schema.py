"""The names opencmap's tables and results use, and how their 0/1 flags are read — defined once.

Columns
    ``sig_info`` (one row per signature) is keyed by :data:`SIG_ID`; signatures name their
    perturbagen (:data:`PERT_ID`) and cell line (:data:`CELL_ID`). Perturbagens carry the
    descriptive fields :data:`PERT_FIELDS`. Gene tables are keyed by :data:`GENE_ID` and flag the
    landmark (:data:`LANDMARK_FLAG`) and best-inferred (:data:`BING_FLAG`) genes.

Flags
    0/1 columns (:data:`FLAG_COLUMNS`) arrive as ints, floats, text (``"1"``, ``"1.0"``,
    ``"true"``, ``"yes"``), booleans or CMap's missing code ``-666``. :func:`parse_flags` reads any
    of them leniently (true only for a spelling of 1; everything else, missing included, is false),
    :func:`flags01` keeps missing values apart (nullable ``Int8``), and :func:`check_flags` refuses
    any value that is neither a spelling of 0 or 1 nor missing (:class:`~opencmap.errors.FormatError`
    naming the file, the column and the values).

Signature roles
    *reference* signatures are scored by NCS normalisation (:data:`REFERENCE_FLAGS`, else all);
    *null* signatures feed the FDR (:data:`NULL_FLAG`, else control perturbagens, ``pert_type``
    starting with :data:`CONTROL_PREFIX`); *exemplar* signatures (one per perturbagen and cell)
    are the τ background queries (:data:`EXEMPLAR_FLAGS`, else all). See :func:`reference_mask`,
    :func:`null_mask`, :func:`exemplar_mask`.

Levels
    A query result has one table per level (:data:`LEVELS`): ``sig`` (signatures), ``pert_cell``
    (perturbagen x cell), ``pert_summary`` (perturbagen), ``pcl_cell`` (PCL x cell) and
    ``pcl_summary`` (PCL). :data:`SUMMARY_LEVELS` are aggregated from ``sig``;
    :data:`CELL_LEVELS` are the per-cell ones τ backgrounds are built for.

This module holds no I/O and no numerics beyond the flag parsing.
"""

from __future__ import annotations

from collections.abc import Iterable
from os import PathLike
from typing import Any

import numpy as np
import pandas as pd

from opencmap.errors import FormatError

__all__ = [
    "SIG_ID",
    "PERT_ID",
    "CELL_ID",
    "PERT_TYPE",
    "GENE_ID",
    "LANDMARK_FLAG",
    "BING_FLAG",
    "LANDMARK_FLAGS",
    "PERT_FIELDS",
    "FLAG_COLUMNS",
    "TRUE_SPELLINGS",
    "FALSE_SPELLINGS",
    "MISSING_SPELLINGS",
    "REFERENCE_FLAGS",
    "NULL_FLAG",
    "EXEMPLAR_FLAGS",
    "CONTROL_PREFIX",
    "LEVELS",
    "SUMMARY_LEVELS",
    "CELL_LEVELS",
    "parse_flags",
    "flags01",
    "check_flags",
    "reference_mask",
    "null_mask",
    "exemplar_mask",
]

# ---------------------------------------------------------------------------------- columns
SIG_ID = "sig_id"
PERT_ID = "pert_id"
CELL_ID = "cell_id"
PERT_TYPE = "pert_type"
GENE_ID = "pr_gene_id"
LANDMARK_FLAG = "pr_is_lm"
BING_FLAG = "pr_is_bing"
#: row fields that mark landmark genes, first present wins (``pr_is_lmark``: older CMap files)
LANDMARK_FLAGS = (LANDMARK_FLAG, "pr_is_lmark")

#: descriptive perturbagen fields carried to perturbagen-level tables and the catalogue
PERT_FIELDS = ("pert_iname", "pert_type", "moa", "target")

#: 0/1 columns of signature and gene tables
FLAG_COLUMNS = (
    "is_exemplar_sig", "is_exemplar", "is_ncs_sig", "is_null_sig", "is_hiq", "qc_pass", "is_touchstone", "is_gold",
    "pr_is_lm", "pr_is_bing", "is_lm", "is_bing",
)  # fmt: skip

# ---------------------------------------------------------------------------------- flags
#: text spellings (after strip + lower-case) read as 1 / as 0 / as missing
TRUE_SPELLINGS = frozenset({"1", "1.0", "true", "yes", "y"})
FALSE_SPELLINGS = frozenset({"0", "0.0", "false", "no", "n"})
MISSING_SPELLINGS = frozenset({"", "nan", "none", "<na>", "na", "-666", "-666.0"})


def _classify(values: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(is 1, is 0, is missing) per value; anything else is in none of the three."""
    s = values if isinstance(values, pd.Series) else pd.Series(values if isinstance(values, np.ndarray) else list(values))
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):  # no text: one pass
        num = s.to_numpy(dtype=float, na_value=np.nan)
        return num == 1, num == 0, np.isnan(num) | (num == -666)
    obj = s.astype(object)
    num = pd.to_numeric(obj, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    true = num == 1
    false = num == 0
    missing = num == -666
    text_pos = np.flatnonzero(np.isnan(num))
    if text_pos.size:  # missing values and text that is no number: "true", "yes", " no ", ...
        rest = obj.iloc[text_pos]
        text = rest.astype(str).str.strip().str.lower()
        true[text_pos] = text.isin(TRUE_SPELLINGS).to_numpy()
        false[text_pos] = text.isin(FALSE_SPELLINGS).to_numpy()
        missing[text_pos] = rest.isna().to_numpy() | text.isin(MISSING_SPELLINGS).to_numpy()
    return true, false, missing


def parse_flags(values: Any) -> np.ndarray:
    """0/1 flags to bool: true for 1 in any spelling (``1``, ``1.0``, ``"1"``, ``"1.0"``, ``True``,
    ``"true"``, ``"yes"``, ``"y"``; case and surrounding spaces ignored), false for everything
    else (0, missing, ``-666``, other values)."""
    return _classify(values)[0]


def flags01(values: Any) -> pd.Series:
    """0/1 flags as nullable ``Int8``: 1 for a spelling of 1 (:func:`parse_flags`), ``<NA>`` for
    missing values (``NaN``, ``""``, ``-666``), 0 otherwise. Keeps a Series' index."""
    true, _, missing = _classify(values)
    out = pd.array(true.astype("int8"), dtype="Int8")
    out[missing] = pd.NA
    if isinstance(values, pd.Series):
        return pd.Series(out, index=values.index, name=values.name)
    return pd.Series(out)


def check_flags(values: Any, *, column: str, path: str | PathLike[str] | None = None, allow_missing: bool = False) -> np.ndarray:
    """Strict 0/1 flags to bool: refuses (:class:`FormatError` naming ``path``, ``column`` and up
    to five bad values) anything that is not a spelling of 0 or 1 (missing values too, unless
    ``allow_missing``: then they read as 0)."""
    true, false, missing = _classify(values)
    ok = true | false | (missing if allow_missing else np.zeros_like(missing))
    if not ok.all():
        s = values if isinstance(values, pd.Series) else pd.Series(list(values))
        shown = ["missing (empty, NaN or -666)" if m else repr(v.item() if isinstance(v, np.generic) else v)
                 for v, m in zip(s.astype(object).to_numpy()[~ok], missing[~ok], strict=True)]
        bad = list(dict.fromkeys(shown))
        raise FormatError(
            f"column {column!r} must hold 0/1 flags; {int((~ok).sum())} rows hold {', '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''}. Fix the table (1 = yes, 0 = no)",
            path=path,
        )
    return true


# ---------------------------------------------------------------------------------- signature roles
#: NCS reference signatures: the first of these columns present (all signatures if none)
REFERENCE_FLAGS = ("is_ncs_sig", "is_touchstone")
#: FDR null signatures
NULL_FLAG = "is_null_sig"
#: τ background queries (exemplar signatures): the first of these columns flagging any
EXEMPLAR_FLAGS = ("is_exemplar_sig", "is_exemplar")
#: pert_type prefix of control perturbagens (the null signatures when no ``is_null_sig``)
CONTROL_PREFIX = "ctl_"


def _first_column(info: pd.DataFrame, names: Iterable[str]) -> pd.Series | None:
    return next((info[n] for n in names if n in info.columns), None)


def reference_mask(sig_info: pd.DataFrame) -> np.ndarray:
    """NCS reference signatures: ``is_ncs_sig`` or ``is_touchstone`` if present, else all."""
    col = _first_column(sig_info, REFERENCE_FLAGS)
    if col is None:
        return np.ones(len(sig_info), dtype=bool)
    mask = parse_flags(col)
    return mask if mask.any() else np.ones(len(sig_info), dtype=bool)


def null_mask(sig_info: pd.DataFrame) -> np.ndarray:
    """Null signatures for FDR: ``is_null_sig`` if present, else control pert types (``ctl_*``)."""
    if NULL_FLAG in sig_info.columns:
        return parse_flags(sig_info[NULL_FLAG])
    if PERT_TYPE not in sig_info.columns:
        return np.zeros(len(sig_info), dtype=bool)
    return sig_info[PERT_TYPE].astype(str).str.startswith(CONTROL_PREFIX).to_numpy(dtype=bool)


def exemplar_mask(sig_info: pd.DataFrame) -> np.ndarray:
    """Exemplar signatures (``is_exemplar_sig`` / ``is_exemplar`` == 1); all if neither column."""
    for col in EXEMPLAR_FLAGS:
        if col in sig_info.columns:
            mask = parse_flags(sig_info[col])
            if mask.any():
                return mask
    return np.ones(len(sig_info), dtype=bool)


# ---------------------------------------------------------------------------------- levels
#: the levels of a query result, finest first
LEVELS = ("sig", "pert_cell", "pert_summary", "pcl_cell", "pcl_summary")
#: the levels aggregated from ``sig``
SUMMARY_LEVELS = LEVELS[1:]
#: the per-cell levels (τ backgrounds are built for these)
CELL_LEVELS = ("sig", "pert_cell", "pcl_cell")
