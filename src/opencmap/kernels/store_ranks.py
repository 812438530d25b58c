"""Fused rank + transpose kernel for building reference stores.

:func:`gene_major_block` turns a block of signatures stored signature-major (one row per
signature, as GCTX keeps them) into the store's gene-major tiles in one parallel pass: for each
signature it gathers the feature space's genes, ranks them descending (1 = largest, ties in gene
order, NaN -> 0) by a stable LSD radix sort, and writes ranks and scores transposed through a
small cache-resident tile (no full-size numpy transpose, no fancy-index copy).

Ranks equal :func:`opencmap.kernels.ranks.descending_ranks` along the genes with NaN set to 0
(-0.0 ties with 0.0).
"""

from __future__ import annotations

import numba
import numpy as np

from opencmap.kernels.radix import radix_argsort_f32

__all__ = ["gene_major_block"]

_TILE = 64  # signatures per parallel work item (tile = _TILE x n_genes, stays in L2)
_GENE_STRIP = 64  # genes per transposition strip


@numba.njit(cache=True, nogil=True)
def _rank_one(x, j, cols, vals, bits, keys, keys2, idx, idx2, counts, rank_row):  # pragma: no cover - compiled
    """Rank signature ``j`` of ``x`` over the genes ``cols``; ranks into ``rank_row`` (NaN -> 0)."""
    g = cols.shape[0]
    for i in range(g):
        v = np.float32(x[j, cols[i]])
        vals[i] = v
        bits[i] = np.float32(-v) + np.float32(0.0)  # -0.0 -> +0.0 (ties with 0.0)
    radix_argsort_f32(bits, idx, keys, keys2, idx2, counts)  # NaN last
    for p in range(g):
        i = idx[p]
        rank_row[i] = 0 if vals[i] != vals[i] else p + 1


@numba.njit(parallel=True, cache=True, nogil=True)
def _gene_major_block(x, cols, ranks_out, scores_out, by_sig_out, with_by_sig):  # pragma: no cover - compiled
    k = x.shape[0]
    g = cols.shape[0]
    n_tiles = (k + _TILE - 1) // _TILE
    for ti in numba.prange(n_tiles):
        j0 = ti * _TILE
        j1 = min(j0 + _TILE, k)
        m = j1 - j0
        rt = np.empty((m, g), dtype=np.uint16)
        st = np.empty((m, g), dtype=np.float32)
        bits = np.empty(g, dtype=np.float32)
        keys = np.empty(g, dtype=np.uint32)
        keys2 = np.empty(g, dtype=np.uint32)
        idx = np.empty(g, dtype=np.int32)
        idx2 = np.empty(g, dtype=np.int32)
        counts = np.empty((3, 2048), dtype=np.int32)
        for t in range(m):
            _rank_one(x, j0 + t, cols, st[t], bits, keys, keys2, idx, idx2, counts, rt[t])
            if with_by_sig:
                for i in range(g):
                    by_sig_out[j0 + t, i] = st[t, i]
        for g0 in range(0, g, _GENE_STRIP):
            g1 = min(g0 + _GENE_STRIP, g)
            for i in range(g0, g1):
                for t in range(m):
                    ranks_out[i, j0 + t] = rt[t, i]
                    scores_out[i, j0 + t] = st[t, i]


def gene_major_block(
    x: np.ndarray,
    cols: np.ndarray,
    ranks_out: np.ndarray,
    scores_out: np.ndarray,
    by_sig_out: np.ndarray | None = None,
) -> None:
    """Rank and transpose a signature-major block into gene-major outputs, in place.

    Shape contract: ``x`` (k, n_rows) float32 (any strides; row = signature), ``cols`` (g,) int64
    positions of the space's genes among ``x``'s columns (store order), ``ranks_out`` (g, >= k)
    uint16 and ``scores_out`` (g, >= k) float32 filled in columns ``0..k-1``; ``by_sig_out``
    (>= k, g) float32 (optional) gets the gathered scores signature-major. ``g <= 65535``.
    """
    if x.ndim != 2 or x.dtype != np.float32:
        raise ValueError(f"x must be a 2-D float32 array, got {x.dtype} {x.shape}")
    cols = np.ascontiguousarray(cols, dtype=np.int64)
    k, g = x.shape[0], cols.shape[0]
    if g > np.iinfo(np.uint16).max:
        raise ValueError(f"at most 65,535 genes fit uint16 ranks, got {g}")
    if len(cols) and (cols.min() < 0 or cols.max() >= x.shape[1]):
        raise ValueError("cols out of range of x's columns")
    if ranks_out.dtype != np.uint16 or scores_out.dtype != np.float32:
        raise ValueError("ranks_out must be uint16 and scores_out float32")
    if ranks_out.shape[0] != g or scores_out.shape[0] != g or ranks_out.shape[1] < k or scores_out.shape[1] < k:
        raise ValueError(f"outputs must be ({g}, >= {k}), got {ranks_out.shape} and {scores_out.shape}")
    with_by_sig = by_sig_out is not None
    if by_sig_out is None:
        by_sig_out = np.empty((0, 0), dtype=np.float32)
    elif by_sig_out.dtype != np.float32 or by_sig_out.shape[0] < k or by_sig_out.shape[1] != g:
        raise ValueError(f"by_sig_out must be float32 (>= {k}, {g}), got {by_sig_out.dtype} {by_sig_out.shape}")
    if k and g:
        _gene_major_block(x, cols, ranks_out, scores_out, by_sig_out, with_by_sig)
