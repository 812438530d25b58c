"""The analyte layout of an L1000 chip table (which probe sits on which analyte in each bead set).

This module never opens files: read the chip with :func:`opencmap.io.beads.read_chip` (the bundled
``L1000_EPSILON.R2.chip`` is at :func:`opencmap.io.beads.default_chip_path`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from opencmap.errors import ConfigError

__all__ = ["ChipLayout", "chip_layout"]


@dataclass(frozen=True)
class ChipLayout:
    """Analytes of a chip for two bead sets (``bead_sets = (high, low)``).

    ``n_analytes``: largest ``pr_analyte_num``; ``not_duo``: 1-based analytes that do not carry two
    distinct assigned probes (missing in a bead set, same probe twice, or ``NOT_ASSIGNED``);
    ``rows``: per bead set, its chip rows ordered by analyte (0-based index).
    """

    bead_sets: tuple[str, str]
    n_analytes: int
    not_duo: tuple[int, ...]
    rows: dict[str, pd.DataFrame]


def chip_layout(chip: pd.DataFrame, bead_sets: Sequence[str] | None = None) -> ChipLayout:
    """The :class:`ChipLayout` of a chip table (columns ``pr_analyte_num``, ``pr_bset_id``, ``pr_id``).

    ``bead_sets`` picks the (high, low) pair; by default the chip's two bead sets in file order.
    Raises :class:`~opencmap.errors.ConfigError` when the chip does not have exactly two bead sets
    (and none were chosen), a chosen bead set is not on the chip, or the chip has no analytes.
    """
    found = list(dict.fromkeys(chip["pr_bset_id"].astype(str)))
    if bead_sets is None:
        if len(found) != 2:
            raise ConfigError(f"chip has bead sets {found}; pass bead_sets=(high, low) to choose two")
        bead_sets = found
    bead_sets = tuple(str(b) for b in bead_sets)
    if len(bead_sets) != 2 or any(b not in found for b in bead_sets):
        raise ConfigError(f"bead_sets must be two of the chip's bead sets {found}, got {list(bead_sets)}")
    rows = {}
    for b in bead_sets:
        r = chip[chip["pr_bset_id"].astype(str) == b].sort_values("pr_analyte_num", kind="stable")
        rows[b] = r.reset_index(drop=True)
    n_analytes = int(chip["pr_analyte_num"].max())
    if n_analytes < 1:
        raise ConfigError("chip has no analytes (pr_analyte_num)")
    hi = rows[bead_sets[0]].set_index("pr_analyte_num")
    lo = rows[bead_sets[1]].set_index("pr_analyte_num")
    not_duo = []
    for a in range(1, n_analytes + 1):
        if a not in hi.index or a not in lo.index:
            not_duo.append(a)
            continue
        ids = (str(hi.at[a, "pr_id"]), str(lo.at[a, "pr_id"]))
        if ids[0] == ids[1] or "NOT_ASSIGNED" in ids:
            not_duo.append(a)
    return ChipLayout((bead_sets[0], bead_sets[1]), n_analytes, tuple(not_duo), rows)
