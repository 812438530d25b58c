"""Stable LSD radix sort of float32 values (compiled building block of the rank kernels).

Store builds, Level 4 ranks and FDR sort millions of short float32 rows; a 3-pass radix sort on
order-preserving ``uint32`` keys is several times faster than a comparison sort there and stable
(ties keep their original order, as CMap's ranks require, algorithms.md §13.1).

* :func:`float32_sort_key` -- the ``uint32`` key of a float32 value (given with its bits): keys compare like the values
  (``-0.0`` just below ``+0.0``), NaN last.
* :func:`radix_sort_keys` -- sort keys in place, carrying their indices (shape contract: 1-D
  ``uint32`` keys and ``int64`` indices of equal length, scratch of the same shapes, ``counts``
  ``(3, 2048)`` ``int64``).
* :func:`radix_argsort_f32` -- stable ascending argsort of a float32 row (NaN last) with the two.

All are numba functions meant to be called from other compiled kernels.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["float32_sort_key", "radix_sort_keys", "radix_argsort_f32"]

_NAN_KEY = np.uint32(0xFFFFFFFF)


@numba.njit(cache=True, nogil=True, inline="always")
def float32_sort_key(v, b):  # pragma: no cover - compiled
    """``uint32`` key of float32 ``v`` (whose bit pattern is ``b``, e.g. from ``arr.view(np.uint32)``)
    ordering like the values; NaN -> 0xFFFFFFFF (last)."""
    if v != v:
        return _NAN_KEY
    if b & np.uint32(0x80000000):
        return ~b
    return b | np.uint32(0x80000000)


@numba.njit(cache=True, nogil=True)
def radix_sort_keys(keys, order, tmp_k, tmp_i, counts):  # pragma: no cover - compiled
    """Stable ascending sort of ``keys`` (uint32) in place, permuting ``order`` alongside.

    3 passes of 11 bits; a pass whose digit is the same for every key is skipped (stability
    keeps the order). On return ``keys`` is sorted and ``order[p]`` is the original position
    (as held in ``order`` on entry) of the ``p``-th smallest key.
    """
    n = keys.shape[0]
    if n == 0:
        return
    counts[:, :] = 0
    for p in range(n):
        k = keys[p]
        counts[0, k & np.uint32(2047)] += 1
        counts[1, (k >> np.uint32(11)) & np.uint32(2047)] += 1
        counts[2, k >> np.uint32(22)] += 1
    src_k, src_i, dst_k, dst_i = keys, order, tmp_k, tmp_i
    swapped = False
    for d in range(3):
        shift = np.uint32(11 * d)
        if counts[d, (src_k[0] >> shift) & np.uint32(2047)] == n:
            continue
        total = 0
        for b in range(2048):
            c = counts[d, b]
            counts[d, b] = total
            total += c
        for p in range(n):
            k = src_k[p]
            b = (k >> shift) & np.uint32(2047)
            t = counts[d, b]
            counts[d, b] = t + 1
            dst_k[t] = k
            dst_i[t] = src_i[p]
        src_k, src_i, dst_k, dst_i = dst_k, dst_i, src_k, src_i
        swapped = not swapped
    if swapped:
        keys[:] = src_k
        order[:] = src_i


@numba.njit(cache=True, nogil=True)
def radix_argsort_f32(row, order, keys, tmp_k, tmp_i, counts):  # pragma: no cover - compiled
    """Stable ascending argsort of float32 ``row`` into ``order`` (int64, NaN last); ``keys`` (uint32)
    is left holding the sorted keys; ``tmp_k``, ``tmp_i``, ``counts`` are scratch as for
    :func:`radix_sort_keys`."""
    bits = row.view(np.uint32)
    for p in range(row.shape[0]):
        keys[p] = float32_sort_key(row[p], bits[p])
        order[p] = p
    radix_sort_keys(keys, order, tmp_k, tmp_i, counts)
