"""Level 2 → NORM: LISS invariant-set scaling of a plate (algorithms.md §2.1).

A plate's Level 2 GEX comes as one matrix per *bead set* (for the L1000 EPSILON pool: ``dp52``
and ``dp53``), each holding its genes *and* the invariant (calibration) probes ``CAL01``..``CAL10``
measured in that bead set. Every bead set is scaled on its own (the invariant rows carry the same
ids in each set, which is why they cannot share one matrix); the scaled genes are then stacked and
the per-sample QC of the bead sets averaged, as CMap's ``liss_pipe`` does.

:func:`liss_plate` returns the NORM matrix (log2, clipped to ``[0, 15]`` preserving rank order,
invariant probes dropped by default) and a per-sample QC table. Samples whose calibration curve
fails (NaN/inf or more than one zero) are all-zero columns flagged ``qc_pass = False``; removing
them is :func:`opencmap.pipeline.censor.censor_plate`'s job.

The kernel is :func:`opencmap.kernels.liss.liss`; its smoothing step follows MATLAB's robust
``malowess`` (:mod:`opencmap.kernels.lowess`, including the CMap quirk that two zero placeholders
take part in the smoothing, §11.7). Agreement with CMap's own output: ~80 % of samples to 4
decimals; the rest differ because MATLAB's robust LOWESS is decided by floating-point round-off
there (see :mod:`opencmap.kernels.lowess` for the evidence and why this cannot be closed).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd

from opencmap.core.gct import GCT
from opencmap.errors import ConfigError, PipelineError
from opencmap.kernels.liss import liss

__all__ = [
    "LISS_REFERENCE",
    "LISS_REFERENCE_LABELS",
    "EPSILON_INVARIANT_SETS",
    "LissParams",
    "liss_plate",
    "liss_bead_set",
    "invariant_level_values",
]

log = logging.getLogger(__name__)

#: CMap's LISS reference curve (``log_ybio_epsilon.gct``, log2): BASE, 10 levels, 2 white-point slots.
LISS_REFERENCE: tuple[float, ...] = (
    4.3219, 5.1293, 5.8989, 6.9109, 7.9208, 8.7097, 9.7448,
    10.6169, 11.3459, 12.0601, 12.4597, 12.6328, 12.8443,
)  # fmt: skip

#: Invariant levels of the EPSILON bead pool (``epsilon_cal.gmx``): level name -> probe ids.
EPSILON_INVARIANT_SETS: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
    (name, (f"CAL{i:02d}",))
    for i, name in enumerate(
        ("G50", "G100", "G200", "G400", "G600", "G1000", "G2000", "G3000", "G5000", "G7000"), start=1
    )
)

#: Labels of the 13 calibration points, as in CMap's ``calib_*.gct`` files.
LISS_REFERENCE_LABELS: tuple[str, ...] = ("BASE", *(n for n, _ in EPSILON_INVARIANT_SETS), "MOVAVG_1", "MOVAVG_2")


@dataclass(frozen=True)
class LissParams:
    """LISS parameters with CMap's defaults (``liss_pipe``/``liss.m``, algorithms.md §10).

    ``invariant_sets`` maps each invariant level (in increasing expression order) to its probe
    ids; a level's value is the median of its probes' log2 values, floored at 0. ``reference``
    has one value more than BASE + levels + 2 white-point slots, i.e. ``len(levels) + 3``.
    """

    reference: tuple[float, ...] = LISS_REFERENCE
    invariant_sets: tuple[tuple[str, tuple[str, ...]], ...] = EPSILON_INVARIANT_SETS
    span: int = 4
    """LOWESS window, in points."""
    robust_iterations: int = 5
    """Robust LOWESS passes (MATLAB ``smooth``: 5)."""
    black_pct: float = 1.0
    """Percentile of the sample giving the BASE calibration point."""
    white_pct: float = 99.0
    """Percentile of the sample giving the white point (reported, not fitted)."""
    minval: float = 0.0
    maxval: float = 15.0
    clip_step: float = 1e-4
    """Rank step of values clipped at ``minval``/``maxval`` (CMap: 10^-precision, precision 4)."""
    log_floor: float = 1.0
    """Level 2 values are log2-transformed as ``log2(max(x, log_floor))`` (CMap ``safe_log2``)."""
    drop_invariant: bool = True
    """Leave the invariant probes out of the output (CMap's NORM files do)."""
    unassigned_ids: tuple[str, ...] = ("NOT_ASSIGNED",)
    """Rows of analytes without a gene (the EPSILON pool has two per bead set): dropped from the output."""
    percentiles_include_invariant: bool = True
    """Take the BASE/white-point percentiles over all rows, invariant probes included (``liss_pipe``
    on a bead-set GEX file); False = over the gene rows only."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        sets = self.invariant_sets
        if isinstance(sets, Mapping):
            sets = tuple((str(k), tuple(str(p) for p in v)) for k, v in sets.items())
        else:
            sets = tuple((str(k), tuple(str(p) for p in v)) for k, v in sets)
        if not sets or any(not probes for _, probes in sets):
            raise ConfigError("LISS invariant_sets must name at least one probe for every level")
        object.__setattr__(self, "invariant_sets", sets)
        ref = tuple(float(v) for v in self.reference)
        if len(ref) != len(sets) + 3:
            raise ConfigError(
                f"LISS reference has {len(ref)} values but {len(sets)} invariant levels need "
                f"{len(sets) + 3} (BASE, one per level, two white-point slots)"
            )
        object.__setattr__(self, "reference", ref)
        object.__setattr__(self, "unassigned_ids", tuple(str(v) for v in self.unassigned_ids))
        if self.span < 1 or self.robust_iterations < 0:
            raise ConfigError("LISS span must be >= 1 and robust_iterations >= 0")
        if not self.minval < self.maxval:
            raise ConfigError(f"LISS minval ({self.minval}) must be below maxval ({self.maxval})")
        if not 0 <= self.black_pct < self.white_pct <= 100:
            raise ConfigError("LISS percentiles must satisfy 0 <= black_pct < white_pct <= 100")

    @property
    def invariant_ids(self) -> tuple[str, ...]:
        """Every invariant probe id, level by level."""
        return tuple(p for _, probes in self.invariant_sets for p in probes)

    def replace(self, **changes: Any) -> LissParams:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown LISS parameter(s) {unknown}; known: {sorted(known)}")
        return replace(self, **changes)


def invariant_level_values(log_expr: GCT, params: LissParams, *, label: str = "") -> np.ndarray:
    """Per-level median of the invariant probes (log2, floored at 0): ``(levels, samples)`` float64.

    Raises :class:`PipelineError` when a level has none of its probes in ``log_expr``; warns
    (log) when only some are present, as CMap does.
    """
    present = set(log_expr.rids)
    out = np.empty((len(params.invariant_sets), log_expr.shape[1]))
    for k, (level, probes) in enumerate(params.invariant_sets):
        found = [p for p in probes if p in present]
        if not found:
            raise PipelineError(
                f"{label or 'Level 2 matrix'}: none of the invariant probes of LISS level {level} "
                f"({', '.join(probes)}) is among its rows; LISS needs the calibration probes of every "
                "bead set (pass each bead set's full GEX matrix, or set LissParams.invariant_sets)"
            )
        if len(found) < len(probes):
            log.warning("%s: LISS level %s uses %d of its %d probes", label or "Level 2", level, len(found), len(probes))
        vals = log_expr.data[log_expr.row_positions(found)].astype(np.float64)
        with np.errstate(all="ignore"):
            med = np.nanmedian(vals, axis=0) if vals.shape[0] > 1 else vals[0]
        out[k] = np.maximum(med, 0.0)
    return out


def _qc_frame(cids: pd.Index, res: Any, labels: Sequence[str]) -> pd.DataFrame:
    qc = pd.DataFrame({k: v for k, v in res.qc.items()}, index=cids.copy())
    qc.insert(0, "qc_pass", res.passed.astype(bool))
    cal = pd.DataFrame(res.calibration, index=cids.copy(), columns=[f"cal_{lab}" for lab in labels])
    return pd.concat([qc, cal], axis=1)


def liss_bead_set(gex: GCT, *, params: LissParams = LissParams(), label: str = "") -> tuple[GCT, pd.DataFrame]:
    """LISS of one bead set's Level 2 matrix (linear-scale GEX with its invariant probe rows).

    Returns the scaled matrix (float32, invariant rows dropped unless
    ``params.drop_invariant`` is False) and the per-sample QC table of
    :func:`opencmap.kernels.liss.liss` (``qc_pass``, fit coefficients, QC statistics and the
    13 calibration points ``cal_BASE`` .. ``cal_MOVAVG_2``).
    """
    name = label or "Level 2 matrix"
    if gex.shape[1] == 0:
        raise PipelineError(f"{name} has no samples to scale")
    raw = gex.data.astype(np.float64)
    if np.isinf(raw).any():
        g, s = np.argwhere(np.isinf(raw))[0]
        raise PipelineError(f"{name}: infinite Level 2 value at gene {gex.rids[g]}, sample {gex.cids[s]}")
    with np.errstate(invalid="ignore"):
        log_expr = np.log2(np.fmax(raw, params.log_floor))
    log_gct = GCT(log_expr, row_meta=gex.row_meta, col_meta=gex.col_meta, dtype=np.float64)
    levels = invariant_level_values(log_gct, params, label=name)
    invariant = set(params.invariant_ids)
    dropped = set(params.unassigned_ids) | (invariant if params.drop_invariant else set())
    keep = np.array([rid not in dropped for rid in gex.rids], dtype=bool)
    if not keep.any():
        raise PipelineError(f"{name} holds only invariant probes; nothing to scale")
    pct_rows = np.ones(gex.shape[0], bool) if params.percentiles_include_invariant else ~np.isin(gex.rids, list(invariant))
    res = liss(
        log_expr,
        levels,
        np.asarray(params.reference),
        span=params.span,
        iterations=params.robust_iterations,
        black_pct=params.black_pct,
        white_pct=params.white_pct,
        minval=params.minval,
        maxval=params.maxval,
        clip_step=params.clip_step,
        percentile_rows=pct_rows,
    )
    labels = ["BASE", *(lvl for lvl, _ in params.invariant_sets), "MOVAVG_1", "MOVAVG_2"]
    qc = _qc_frame(gex.cids, res, labels)
    n_fail = int((~res.passed).sum())
    if n_fail:
        log.warning("%s: %d of %d samples failed LISS calibration: %s", name, n_fail, gex.shape[1], list(gex.cids[~res.passed][:10]))
    scaled = GCT(res.values[keep], row_meta=gex.row_meta.iloc[keep], col_meta=gex.col_meta)
    return scaled, qc


#: QC fields CMap writes into the NORM column metadata (averaged over bead sets; 0 where LISS failed).
_ANNOTATED = {"qc_slope": "calib_slope_deg", "qc_f_logp": "f_logpval", "qc_iqr": "iqr"}


def liss_plate(
    gex: GCT | Mapping[str, GCT],
    *,
    params: LissParams = LissParams(),
) -> tuple[GCT, pd.DataFrame]:
    """LISS-scale a plate: one GCT (a single bead set) or a mapping ``bead set -> GCT``.

    Parameters
    ----------
    gex:
        Linear-scale Level 2 matrices (genes + invariant probes x wells). With several bead sets
        every matrix must have the same column ids (the wells); their gene rows must not overlap.
    params:
        :class:`LissParams` (CMap defaults).

    Returns
    -------
    norm:
        NORM matrix (log2, float32): the gene rows of every bead set, stacked in the given order;
        column metadata of the first bead set plus ``qc_pass``, ``qc_slope``, ``qc_f_logp`` and
        ``qc_iqr`` (bead-set means, 0 where a set failed, as CMap annotates them).
    qc:
        One row per well: ``qc_pass`` (all bead sets passed), ``qc_slope``/``qc_f_logp``/``qc_iqr``
        as above, every numeric QC statistic averaged over the bead sets (the basis of
        :func:`opencmap.pipeline.censor.censor_plate`), ``liss_failed_sets`` and the per-set
        calibration curves (``cal_<set>_<point>``; ``cal_<point>`` for a single set).
    """
    sets: dict[str, GCT] = {"": gex} if isinstance(gex, GCT) else {str(k): v for k, v in gex.items()}
    if not sets:
        raise PipelineError("liss_plate needs at least one Level 2 matrix")
    first_name, first = next(iter(sets.items()))
    for name, g in sets.items():
        if not g.cids.equals(first.cids):
            raise PipelineError(
                f"bead sets {first_name!r} and {name!r} have different wells (column ids); "
                "LISS combines bead sets of the same plate only"
            )
    scaled: list[GCT] = []
    qcs: dict[str, pd.DataFrame] = {}
    for name, g in sets.items():
        s, q = liss_bead_set(g, params=params, label=f"bead set {name}" if name else "")
        scaled.append(s)
        qcs[name] = q
    # stack the genes of the bead sets
    rids = [r for s in scaled for r in s.rids]
    if len(set(rids)) != len(rids):
        dup = pd.Index(rids)[pd.Index(rids).duplicated()].unique()[:5].tolist()
        raise PipelineError(f"bead sets share gene rows {dup}; each gene must be measured in one bead set")
    data = np.vstack([s.data for s in scaled])
    row_meta = pd.concat([s.row_meta for s in scaled], axis=0, sort=False)

    numeric = [c for c in qcs[first_name].columns if c != "qc_pass" and not c.startswith("cal_")]
    stacked = np.stack([q[numeric].to_numpy(dtype=np.float64) for q in qcs.values()])
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean_stats = np.nanmean(stacked, axis=0)
    qc = pd.DataFrame(mean_stats, index=first.cids.copy(), columns=numeric)
    passed = np.logical_and.reduce([q["qc_pass"].to_numpy(bool) for q in qcs.values()])
    qc.insert(0, "qc_pass", passed)
    for out_name, field_name in _ANNOTATED.items():
        per_set = np.stack([np.where(q["qc_pass"].to_numpy(bool), q[field_name].to_numpy(np.float64), 0.0) for q in qcs.values()])
        qc.insert(qc.columns.get_loc("qc_pass") + 1, out_name, per_set.mean(axis=0))
    failed_sets = [
        ",".join(name or "all" for name, q in qcs.items() if not q["qc_pass"].iloc[i]) for i in range(first.shape[1])
    ]
    qc["liss_failed_sets"] = pd.Series(failed_sets, index=qc.index, dtype=object)
    for name, q in qcs.items():
        cal = q[[c for c in q.columns if c.startswith("cal_")]]
        if name:
            cal = cal.rename(columns=lambda c, n=name: f"cal_{n}_{c[4:]}")
        qc = pd.concat([qc, cal], axis=1)

    col_meta = first.col_meta.copy()
    for c in ("qc_pass", "qc_slope", "qc_f_logp", "qc_iqr"):
        col_meta[c] = qc[c].to_numpy()
    norm = GCT(data, row_meta=row_meta, col_meta=col_meta)
    log.info("LISS: %d genes x %d wells from %d bead set(s); %d wells failed", *norm.shape, len(sets), int((~passed).sum()))
    return norm, qc
