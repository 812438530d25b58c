"""Bead-level text files and the L1000 assay tables that Level 1 -> 2 needs.

* bead-level text (``barcode_id`` / ``FI``, one bead a line): :func:`read_bead_text`
* plate maps (``<plate>.map``: one line per well, ``det_well`` + sample annotations):
  :func:`read_plate_map`
* chip files (``L1000_EPSILON.R2.chip``: analyte x bead set -> probe and gene): :func:`read_chip`;
  the bundled EPSILON chip: :func:`default_chip_path` (its layout: :func:`opencmap.core.chip.chip_layout`)
* pool tables (``L1000_poolinfo.txt``: bead sets of a pool, the not-duo analytes):
  :func:`read_pool_info`, and :func:`parse_index_list` for MATLAB lists like ``[1:10,11,499]``
* peak-detection parameter files (``detect_params.txt``): :func:`read_detect_params`

Tables go through :func:`opencmap.io.read_table` (ids stay strings, ``-666`` = missing).
"""

from __future__ import annotations

import re
from os import PathLike
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from opencmap.errors import ConfigError, FormatError
from opencmap.io.tables import read_table

__all__ = [
    "Beads",
    "read_bead_text",
    "read_plate_map",
    "read_chip",
    "default_chip_path",
    "DEFAULT_CHIP",
    "read_pool_info",
    "read_detect_params",
    "parse_index_list",
]


class Beads(NamedTuple):
    """The beads of one well.

    Attributes
    ----------
    analyte:
        ``(n,)`` int32 bead region / analyte id (1..500; 0 = unclassified bead).
    intensity:
        ``(n,)`` float64 reporter fluorescence (linear scale).
    source:
        Where the beads came from (file path), for messages.
    """

    analyte: np.ndarray
    intensity: np.ndarray
    source: str | None = None


def _require(df: pd.DataFrame, columns: list[str], path: str | PathLike[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise FormatError(
            f"{what} lacks column(s) {missing}; it has {list(df.columns)[:12]}", path=path, line=1
        )


def read_bead_text(path: str | PathLike[str]) -> Beads:
    """Read bead-level text: a header ``barcode_id<TAB>FI`` then one bead a line.

    ``barcode_id`` is the analyte (bead region) and ``FI`` the fluorescence intensity. Column
    names are matched case-insensitively; ``RID``/``RP1`` (LXB dump names) are accepted too.
    """
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, engine="c")
    except FileNotFoundError:
        raise FormatError("bead-level text file not found; check the path", path=path) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise FormatError(f"cannot parse bead-level text: {exc}", path=path) from exc
    cols = {c.strip().lower(): c for c in df.columns}
    rid = cols.get("barcode_id", cols.get("rid"))
    fi = cols.get("fi", cols.get("rp1"))
    if rid is None or fi is None:
        raise FormatError(
            f"bead-level text needs columns barcode_id and FI, found {list(df.columns)}",
            path=path,
            line=1,
        )
    analyte = pd.to_numeric(df[rid], errors="coerce")
    intensity = pd.to_numeric(df[fi], errors="coerce")
    bad = analyte.isna() | intensity.isna()
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise FormatError(
            f"non-numeric bead value ({df[rid].iloc[first]!r}, {df[fi].iloc[first]!r})",
            path=path,
            line=first + 2,
        )
    a = analyte.to_numpy(dtype=np.float64)
    if (a != np.round(a)).any():
        first = int(np.flatnonzero(a != np.round(a))[0])
        raise FormatError(f"barcode_id must be an integer, got {a[first]}", path=path, line=first + 2)
    return Beads(a.astype(np.int32), intensity.to_numpy(dtype=np.float64), str(path))


def read_plate_map(path: str | PathLike[str]) -> pd.DataFrame:
    """Read a plate map (``.map``): one line per detection well, all fields as strings.

    Must have a ``det_well`` column (``rna_well`` is used when ``det_well`` is absent). The result
    is indexed by the upper-cased well name (``"A03"``), which must be unique.
    """
    df = read_table(path, text_columns=("det_well", "rna_well", "det_plate", "rna_plate"))
    key = "det_well" if "det_well" in df.columns else "rna_well" if "rna_well" in df.columns else None
    if key is None:
        raise FormatError(
            f"plate map needs a det_well (or rna_well) column; it has {list(df.columns)[:12]}",
            path=path,
            line=1,
        )
    wells = df[key].astype(str).str.strip().str.upper()
    bad = ~wells.str.fullmatch(r"[A-Z]{1,2}\d{1,3}")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise FormatError(f"{key} {df[key].iloc[i]!r} is not a well name like A03", path=path, line=i + 2)
    wells = wells.map(_normalise_well)
    dup = wells[wells.duplicated()]
    if len(dup):
        raise FormatError(f"plate map lists well(s) {dup.unique()[:5].tolist()} more than once", path=path)
    df.index = pd.Index(wells.to_numpy(dtype=object), name="well")
    if "det_well" not in df.columns:
        df["det_well"] = df.index.to_numpy()
    return df


def _normalise_well(well: str) -> str:
    """``a3`` / ``A003`` -> ``A03`` (rows letters, columns two digits)."""
    m = re.fullmatch(r"([A-Za-z]{1,2})0*(\d{1,3})", well.strip())
    if not m:
        return well.strip().upper()
    return f"{m.group(1).upper()}{int(m.group(2)):02d}"


def read_chip(path: str | PathLike[str]) -> pd.DataFrame:
    """Read an L1000 chip file (analyte x bead set -> probe, gene).

    Required columns: ``pr_analyte_num``, ``pr_bset_id``, ``pr_id``, ``pr_gene_id``; usual extra
    columns: ``pr_type`` (``LM``, ``INV``, ``NOT_ASSIGNED``), ``pr_analyte_id``, ``pr_pool_id``,
    ``pr_lua_id``, ``pr_gene_symbol``, ``pr_gene_title``. ``pr_analyte_num`` becomes int; each
    (analyte, bead set) pair must appear once.
    """
    df = read_table(path, text_columns=("pr_id", "pr_bset_id", "pr_type"))
    _require(df, ["pr_analyte_num", "pr_bset_id", "pr_id", "pr_gene_id"], path, "chip file")
    num = pd.to_numeric(df["pr_analyte_num"], errors="coerce")
    if num.isna().any():
        i = int(np.flatnonzero(num.isna().to_numpy())[0])
        raise FormatError(
            f"pr_analyte_num {df['pr_analyte_num'].iloc[i]!r} is not a number", path=path, line=i + 2
        )
    df["pr_analyte_num"] = num.astype(np.int64)
    dup = df.duplicated(["pr_analyte_num", "pr_bset_id"])
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise FormatError(
            f"analyte {df['pr_analyte_num'].iloc[i]} appears twice for bead set {df['pr_bset_id'].iloc[i]}",
            path=path,
            line=i + 2,
        )
    return df.reset_index(drop=True)


DEFAULT_CHIP = "L1000_EPSILON.R2.chip"


def default_chip_path() -> Path:
    """Path of the bundled chip file (``opencmap/datasets/resources/`` + :data:`DEFAULT_CHIP`).

    Raises :class:`~opencmap.errors.ConfigError` (asking for an explicit ``chip=``) when it is not
    installed.
    """
    from importlib.resources import files

    # addressed through the top package, so that finding the file does not import opencmap.datasets
    path = Path(str(files("opencmap") / "datasets" / "resources" / DEFAULT_CHIP))
    if not path.is_file():
        raise ConfigError(
            f"no chip given and {DEFAULT_CHIP} is not bundled at {path}; pass chip= the chip file "
            "of your bead pool (CMap's L1000_EPSILON.R2.chip maps analytes to genes)"
        )
    return path


def parse_index_list(text: str) -> list[int]:
    """Parse a MATLAB index list such as ``[1:10,11,499]`` or ``0`` into sorted unique ints.

    Supports ``a:b`` and ``a:step:b`` ranges separated by commas or spaces. (CMap ``eval``s these
    strings; we parse them.)
    """
    body = text.strip().strip("[]").strip()
    if not body:
        return []
    out: set[int] = set()
    for token in re.split(r"[,\s]+", body):
        if not token:
            continue
        parts = token.split(":")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise FormatError(f"cannot parse index list {text!r}: bad item {token!r}") from None
        if len(nums) == 1:
            out.add(nums[0])
        elif len(nums) == 2:
            out.update(range(nums[0], nums[1] + 1))
        elif len(nums) == 3 and nums[1] != 0:
            out.update(range(nums[0], nums[2] + (1 if nums[1] > 0 else -1), nums[1]))
        else:
            raise FormatError(f"cannot parse index list {text!r}: bad range {token!r}")
    return sorted(out)


def read_pool_info(path: str | PathLike[str]) -> pd.DataFrame:
    """Read ``L1000_poolinfo.txt``: one line per pool revision (``epsilon:r2``).

    Returns a table indexed by ``id`` with, besides the file's string columns, ``bead_sets``
    (tuple of bead set ids, high-proportion set first, e.g. ``("dp52", "dp53")``) and
    ``not_duo_analytes`` (list of ints parsed from ``not_duo``).
    """
    df = read_table(path, text_columns=("exp_bset", "not_duo"))
    _require(df, ["id", "exp_bset", "not_duo"], path, "pool info")
    df["bead_sets"] = [tuple(s.strip() for s in v.split(",") if s.strip()) for v in df["exp_bset"]]
    parsed = []
    for i, v in enumerate(df["not_duo"]):
        try:
            parsed.append(parse_index_list(v))
        except FormatError as exc:
            raise FormatError(str(exc), path=path, line=i + 2) from None
    df["not_duo_analytes"] = parsed
    return df.set_index("id", drop=False)


def read_detect_params(path: str | PathLike[str]) -> dict[str, float | str]:
    """Read a peak-detection parameter file (``key: value`` lines, ``#`` comments).

    Numeric values become floats; others stay strings. Example keys: ``low_exp``, ``high_exp``,
    ``dpeak_method``, ``max_k``, ``min_bead``, ``min_peak_support``, ``min_peak_support_pct``,
    ``opt_support_pct_hi``, ``opt_support_pct_lo``, ``subtract_bg``, ``merge_close_peaks``.
    """
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise FormatError(f"cannot read detect parameters: {exc.strerror or exc}", path=path) from exc
    params: dict[str, float | str] = {}
    for n, line in enumerate(lines, start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if ":" not in s:
            raise FormatError(f"expected 'key: value', got {s!r}", path=path, line=n)
        key, value = (t.strip() for t in s.split(":", 1))
        try:
            params[key] = float(value)
        except ValueError:
            params[key] = value
    return params
