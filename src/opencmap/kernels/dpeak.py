"""Bead peak calling ("dpeak", CMap method ``kmeans_viable``) and assignment of peaks to genes.

Spec: algorithms.md §1.2 (peak calling) and §1.3 (assignment). Every (well, analyte) pair is
a *group*: the reporter intensities of its beads. Groups are passed in CSR layout (one flat
``values`` array plus ``offsets``) so one call handles many wells; the kernels release the GIL
so callers can run chunks of wells on threads.

Per group (log2 scale, ``x = log2(max(y, 1))``), method ``kmeans_viable``:

1. good beads: ``low <= x <= high``; ``medexp = round(2**median(good))`` (1 when none).
2. no beads: method ``MISSING`` (value 1, support 0). Not-duo analytes, or fewer than
   ``min_bead`` good beads: method ``MEDIAN`` (value ``medexp``, support = good beads).
3. otherwise for k = 2..max_k: best of ``n_init`` 1-D k-means runs (empty clusters dropped);
   skip k with < 2 clusters; a cluster is viable with ``>= min_support`` beads and
   ``>= min_support_pct`` % of good beads; accept k if > 1 viable cluster and the distance of
   the two largest clusters' shares to the ideal (``opt_hi``, ``opt_lo``) % beats the best so far
   (initially the one-cluster distance ``|100 - opt_hi| + |0 - opt_lo|``). Beads of non-viable
   clusters are then discarded (the good-bead count shrinks accordingly); each peak is the
   median of its cluster, support its size; peaks are sorted by support (descending, stable),
   values converted back with ``round(2**median)``. No accepted k: one peak at ``medexp``.

Method ``kspeak`` (what CMap's ``sig_dpeak_tool`` runs) replaces step 3 with kernel-density
peaks, each supported by the beads nearest to it, sorted by support (deterministic).

Assignment (two genes per analyte, ``ntag = 2``): peak 1 -> gene on the high-proportion bead
set, peak 2 -> the low one; missing peaks take ``medexp`` (support 0). If either assigned peak
has support below ``min_support`` beads or ``min_support_pct`` %, the unsupported gene(s) take
peak 1's value and both supports become ``floor(support_1 / 2)``. MISSING/MEDIAN groups give
their single value and full support to both genes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from opencmap.kernels.kmeans1d import kmeans1d_best, prefix_sums

__all__ = [
    "METHOD_MISSING",
    "METHOD_MEDIAN",
    "METHOD_KMEANS",
    "METHOD_KSPEAK",
    "METHOD_NAMES",
    "PEAK_METHODS",
    "n_uniforms",
    "detect_peaks",
    "assign_peaks",
]

METHOD_MISSING = 0
METHOD_MEDIAN = 1
METHOD_KMEANS = 2
METHOD_KSPEAK = 3
METHOD_NAMES = ("missing", "median", "kmeans_viable", "kspeak")

#: Peak-calling algorithms: ``kmeans_viable`` (CMap's production default) and ``kspeak``
#: (kernel-density peaks; CMap's ``sig_dpeak_tool``).
PEAK_METHODS = ("kmeans_viable", "kspeak")


def n_uniforms(max_k: int = 4, n_init: int = 5) -> int:
    """Uniform random numbers one group needs: ``(max_k - 1) * n_init * max_k``."""
    return (max_k - 1) * n_init * max_k


@njit(cache=True, nogil=True)
def _round_pow2(v: float) -> float:
    """MATLAB ``round(pow2(v))`` (half away from zero; values are positive)."""
    return np.floor(2.0**v + 0.5)


@njit(cache=True, nogil=True)
def _median_sorted(x: np.ndarray, a: int, b: int) -> float:
    n = b - a
    h = a + n // 2
    if n % 2:
        return x[h]
    return 0.5 * (x[h - 1] + x[h])


@njit(cache=True, nogil=True)
def _kspeak(xs: np.ndarray, out_exp: np.ndarray, out_sup: np.ndarray, out_pct: np.ndarray) -> int:
    """Kernel-density peaks of sorted log2 values ``xs`` (CMap ``kspeak``, MATLAB ``ksdensity`` +
    ``findpeaks``): Gaussian kernel, bandwidth ``sigma (4 / 3n)^(1/5)`` with ``sigma`` =
    MAD / 0.6745, density on 100 points spanning ``[min - 3h, max + 3h]``; peaks = interior
    local maxima above 1e-4 taken in order of height; each bead supports its nearest peak (the
    taller on ties); peaks are then sorted by support (descending, stable). Fills the ``out_*``
    arrays with the first ``len(out_exp)`` peaks; returns their number."""
    n = xs.shape[0]
    npts = 100
    med = _median_sorted(xs, 0, n)
    dev = np.sort(np.abs(xs - med))
    sig = _median_sorted(dev, 0, n) / 0.6745
    if sig <= 0.0:
        sig = xs[n - 1] - xs[0]
    h = sig * (4.0 / (3.0 * n)) ** 0.2 if sig > 0.0 else 1.0
    lo = xs[0] - 3.0 * h
    step = (xs[n - 1] + 3.0 * h - lo) / (npts - 1)
    grid = np.empty(npts)
    dens = np.zeros(npts)
    norm = 1.0 / (n * h * np.sqrt(2.0 * np.pi))
    for i in range(npts):
        g = lo + i * step
        grid[i] = g
        acc = 0.0
        for j in range(n):
            z = (g - xs[j]) / h
            acc += np.exp(-0.5 * z * z)
        dens[i] = acc * norm
    locs = np.empty(npts, dtype=np.int64)
    npk = 0
    for i in range(1, npts - 1):
        if dens[i] > dens[i - 1] and dens[i] > dens[i + 1] and dens[i] > 1e-4:
            locs[npk] = i
            npk += 1
    if npk == 0:
        return 0
    heights = np.empty(npk)
    for p in range(npk):
        heights[p] = -dens[locs[p]]
    order = np.argsort(heights, kind="mergesort")
    peaks = np.empty(npk)
    for p in range(npk):
        peaks[p] = grid[locs[order[p]]]
    support = np.zeros(npk, dtype=np.int64)
    for j in range(n):
        best = 0
        bd = (xs[j] - peaks[0]) ** 2
        for p in range(1, npk):
            d = (xs[j] - peaks[p]) ** 2
            if d < bd:
                bd = d
                best = p
        support[best] += 1
    # CMap sorts by support (its ``sortbyht`` default is false); stable, so ties stay by height
    neg = np.empty(npk)
    for p in range(npk):
        neg[p] = -support[p]
    by_support = np.argsort(neg, kind="mergesort")
    keep = min(npk, out_exp.shape[0])
    for p in range(keep):
        q = by_support[p]
        out_exp[p] = _round_pow2(peaks[q])
        out_sup[p] = support[q]
        out_pct[p] = 100.0 * support[q] / n
    return keep


@njit(cache=True, nogil=True)
def _detect_group(
    y: np.ndarray,
    u: np.ndarray,
    force_median: bool,
    low: float,
    high: float,
    high_median: float,
    min_bead: int,
    max_k: int,
    n_init: int,
    min_support: float,
    min_support_pct: float,
    opt_hi: float,
    opt_lo: float,
    kspeak: bool,
    out_exp: np.ndarray,
    out_sup: np.ndarray,
    out_pct: np.ndarray,
) -> tuple[int, int, int, float, int]:
    """Peaks of one group; fills ``out_*`` (length >= max_k); returns
    (npeak, totbead, ngoodbead, medexp, method)."""
    n = y.shape[0]
    if n == 0:
        out_exp[0] = 1.0
        out_sup[0] = 0
        out_pct[0] = 0.0
        return 1, 0, 0, 1.0, METHOD_MISSING
    hi = high_median if force_median else high
    x = np.empty(n)
    ng = 0
    for i in range(n):
        v = np.log2(max(y[i], 1.0))
        if v >= low and v <= hi:
            x[ng] = v
            ng += 1
    xs = np.sort(x[:ng])
    medexp = 1.0
    if ng > 0:
        medexp = _round_pow2(_median_sorted(xs, 0, ng))
    if force_median or ng < min_bead:
        out_exp[0] = medexp
        out_sup[0] = ng
        out_pct[0] = 100.0
        return 1, n, ng, medexp, METHOD_MEDIAN
    if kspeak:
        npk = _kspeak(xs, out_exp, out_sup, out_pct)
        if npk == 0:  # no density peak: keep the median default
            out_exp[0] = medexp
            out_sup[0] = ng
            out_pct[0] = 100.0
            return 1, n, ng, medexp, METHOD_MEDIAN
        return npk, n, ng, medexp, METHOD_KSPEAK

    s, s2 = prefix_sums(xs)
    best_dist = abs(100.0 - opt_hi) + abs(0.0 - opt_lo)
    best_bounds = np.zeros(2, dtype=np.int64)
    best_bounds[1] = ng
    best_viable = np.ones(1, dtype=np.bool_)
    for k in range(2, max_k + 1):
        ur = u[k - 2]
        bounds, cent, inertia = kmeans1d_best(xs, s, s2, k, np.ascontiguousarray(ur[:, :k]), 100, True)
        m = cent.shape[0]
        if m < 2:
            continue
        first = 0
        second = 0
        nviable = 0
        viable = np.zeros(m, dtype=np.bool_)
        for j in range(m):
            sup = bounds[j + 1] - bounds[j]
            if sup > first:
                second = first
                first = sup
            elif sup > second:
                second = sup
            if sup >= min_support and 100.0 * sup / ng >= min_support_pct:
                viable[j] = True
                nviable += 1
        dist = abs(100.0 * first / ng - opt_hi) + abs(100.0 * second / ng - opt_lo)
        if nviable > 1 and dist < best_dist:
            best_dist = dist
            best_bounds = bounds
            best_viable = viable

    # keep viable clusters; the good-bead count shrinks to their beads
    m = best_viable.shape[0]
    npk = 0
    kept = 0
    for j in range(m):
        if best_viable[j]:
            kept += best_bounds[j + 1] - best_bounds[j]
    for j in range(m):
        if best_viable[j]:
            a = best_bounds[j]
            b = best_bounds[j + 1]
            out_exp[npk] = _median_sorted(xs, a, b)
            out_sup[npk] = b - a
            out_pct[npk] = 100.0 * (b - a) / kept
            npk += 1
    # stable sort by support, descending (insertion sort; npk <= max_k)
    for i in range(1, npk):
        e = out_exp[i]
        sp = out_sup[i]
        pc = out_pct[i]
        j = i - 1
        while j >= 0 and out_sup[j] < sp:
            out_exp[j + 1] = out_exp[j]
            out_sup[j + 1] = out_sup[j]
            out_pct[j + 1] = out_pct[j]
            j -= 1
        out_exp[j + 1] = e
        out_sup[j + 1] = sp
        out_pct[j + 1] = pc
    for i in range(npk):
        out_exp[i] = _round_pow2(out_exp[i])
    return npk, n, kept, medexp, METHOD_KMEANS


@njit(cache=True, nogil=True)
def detect_peaks(
    values: np.ndarray,
    offsets: np.ndarray,
    uniforms: np.ndarray,
    force_median: np.ndarray,
    low: float = 4.0,
    high: float = 15.0,
    high_median: float = 14.0,
    min_bead: int = 20,
    max_k: int = 4,
    n_init: int = 5,
    min_support: float = 10.0,
    min_support_pct: float = 10.0,
    opt_hi: float = 65.0,
    opt_lo: float = 35.0,
    kspeak: bool = False,
):
    """Call peaks for every group (well x analyte).

    Parameters
    ----------
    values:
        ``(n_beads,)`` float64 linear intensities, grouped: group ``g`` is
        ``values[offsets[g]:offsets[g+1]]`` (any order inside a group).
    offsets:
        ``(G + 1,)`` int64, non-decreasing, ``offsets[0] == 0``, ``offsets[-1] == n_beads``.
    uniforms:
        ``(G, max_k - 1, n_init, max_k)`` float64 uniforms in ``[0, 1)`` (k-means++ seeding of
        replicate ``r`` of ``k`` uses ``uniforms[g, k - 2, r, :k]``).
    force_median:
        ``(G,)`` bool: not-duo analytes, summarised by the median only (window
        ``[low, high_median]``: CMap calls them with its default upper threshold, 14).
    low, high, min_bead, max_k, n_init, min_support, min_support_pct, opt_hi, opt_lo:
        CMap ``detect_params`` (defaults shown).
    kspeak:
        Use kernel-density peaks (:func:`_kspeak`, sorted by height, all good beads kept)
        instead of ``kmeans_viable``; ``uniforms`` is then unused (may have size 0 per group).

    Returns
    -------
    pkexp : (G, max_k) float64   peak values, linear, rounded; NaN beyond ``npeak``
    pksupport : (G, max_k) int64 beads per peak; 0 beyond ``npeak``
    pkpct : (G, max_k) float64   support in % of (kept) good beads
    npeak : (G,) int64
    totbead : (G,) int64         all beads of the group
    ngoodbead : (G,) int64       good beads (after discarding non-viable clusters)
    medexp : (G,) float64        ``round(2**median)`` of the good beads (1 if none)
    method : (G,) int8           ``METHOD_MISSING`` / ``METHOD_MEDIAN`` / ``METHOD_KMEANS`` / ``METHOD_KSPEAK``
    """
    g_count = offsets.shape[0] - 1
    pkexp = np.full((g_count, max_k), np.nan)
    pksup = np.zeros((g_count, max_k), dtype=np.int64)
    pkpct = np.zeros((g_count, max_k))
    npeak = np.zeros(g_count, dtype=np.int64)
    totbead = np.zeros(g_count, dtype=np.int64)
    ngood = np.zeros(g_count, dtype=np.int64)
    medexp = np.ones(g_count)
    method = np.zeros(g_count, dtype=np.int8)
    for g in range(g_count):
        e = np.full(max_k, np.nan)
        sp = np.zeros(max_k, dtype=np.int64)
        pc = np.zeros(max_k)
        npk, tot, ng, med, meth = _detect_group(
            values[offsets[g] : offsets[g + 1]],
            uniforms[g],
            force_median[g],
            low,
            high,
            high_median,
            min_bead,
            max_k,
            n_init,
            min_support,
            min_support_pct,
            opt_hi,
            opt_lo,
            kspeak,
            e,
            sp,
            pc,
        )
        for j in range(npk):
            pkexp[g, j] = e[j]
            pksup[g, j] = sp[j]
            pkpct[g, j] = pc[j]
        npeak[g] = npk
        totbead[g] = tot
        ngood[g] = ng
        medexp[g] = med
        method[g] = meth
    return pkexp, pksup, pkpct, npeak, totbead, ngood, medexp, method


@njit(cache=True)
def assign_peaks(
    pkexp: np.ndarray,
    pksupport: np.ndarray,
    pkpct: np.ndarray,
    npeak: np.ndarray,
    ngoodbead: np.ndarray,
    medexp: np.ndarray,
    method: np.ndarray,
    min_support: float = 10.0,
    min_support_pct: float = 10.0,
):
    """Assign peaks to the two genes of each group (CMap ``assign_lxb_peaks``, ntag = 2).

    Inputs are the outputs of :func:`detect_peaks`. Returns ``value``, ``support`` and
    ``support_pct``, each ``(G, 2)``: column 0 = gene on the high-proportion bead set, 1 = low.
    """
    g_count = pkexp.shape[0]
    value = np.zeros((g_count, 2))
    support = np.zeros((g_count, 2))
    pct = np.zeros((g_count, 2))
    for g in range(g_count):
        if method[g] == METHOD_MISSING or method[g] == METHOD_MEDIAN:
            for t in range(2):
                value[g, t] = pkexp[g, 0]
                support[g, t] = pksupport[g, 0]
                pct[g, t] = pkpct[g, 0]
            continue
        if npeak[g] == 0:
            continue
        for t in range(2):
            value[g, t] = medexp[g]
        navail = min(2, npeak[g])
        for t in range(navail):
            value[g, t] = pkexp[g, t]
            support[g, t] = pksupport[g, t]
            pct[g, t] = pkpct[g, t]
        unsupported = False
        for t in range(2):
            if support[g, t] < min_support or pct[g, t] < min_support_pct:
                unsupported = True
                value[g, t] = pkexp[g, 0]
        if unsupported:
            half = np.floor(pksupport[g, 0] / 2.0)
            for t in range(2):
                support[g, t] = half
                pct[g, t] = 100.0 * half / max(1, ngoodbead[g])
    return value, support, pct
