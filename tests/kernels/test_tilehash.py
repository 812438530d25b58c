"""Tile hashes (:mod:`opencmap.kernels.tilehash`): properties against a plain-Python reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from opencmap.errors import ValidationError
from opencmap.kernels.tilehash import _KEYS, TILE_COLS, check_tiles, hash_bits, tile_hashes

_DTYPES = st.sampled_from([np.uint16, np.float32, np.int32, np.uint8, np.float64, np.int64])
_MASK = (1 << 64) - 1


def _reference(values: np.ndarray) -> int:
    """The documented hash of one tile, in Python integers."""
    words = hash_bits(np.ascontiguousarray(values)[None, :])[0]
    acc = sum(int(x) * int(k) for x, k in zip(words.tolist(), _KEYS.tolist(), strict=False)) & _MASK
    h = (acc + len(words) * 0x9E3779B97F4A7C15) & _MASK
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK
    return h ^ (h >> 31)


@st.composite
def arrays(draw):
    dtype = draw(_DTYPES)
    shape = (draw(st.integers(0, 5)), draw(st.integers(0, 70)))
    arr = draw(hnp.arrays(dtype, shape, elements=hnp.from_dtype(np.dtype(dtype), allow_nan=True) if np.dtype(dtype).kind == "f" else None))
    cols = draw(st.integers(1, 64))
    return arr, cols


@settings(max_examples=150, deadline=None)
@given(arrays())
def test_hashes_match_the_reference(case):
    arr, cols = case
    sums = tile_hashes(arr, cols)
    n_tiles = max(1, -(-arr.shape[1] // cols))
    assert sums.shape == (arr.shape[0], n_tiles) and sums.dtype == np.uint64
    for r in range(arr.shape[0]):
        for t in range(n_tiles):
            assert int(sums[r, t]) == _reference(arr[r, t * cols : (t + 1) * cols])


@settings(max_examples=150, deadline=None)
@given(arrays(), st.data())
def test_any_changed_value_changes_its_tile_only(case, data):
    arr, cols = case
    if arr.size == 0:
        return
    sums = tile_hashes(arr, cols)
    r = data.draw(st.integers(0, arr.shape[0] - 1))
    c = data.draw(st.integers(0, arr.shape[1] - 1))
    bits = hash_bits(arr).copy()
    scale = bits.shape[1] // arr.shape[1]
    word = c * scale + data.draw(st.integers(0, scale - 1))
    bit = data.draw(st.integers(0, bits.dtype.itemsize * 8 - 1))
    bits[r, word] ^= bits.dtype.type(1 << bit)
    changed = bits.view(arr.dtype).reshape(arr.shape)
    after = tile_hashes(changed, cols)
    diff = np.argwhere(after != sums)
    assert diff.tolist() == [[r, c // cols]]
    seen = np.zeros(sums.shape, dtype=np.uint8)
    assert check_tiles(changed, sums, seen, np.arange(arr.shape[0]), 0, arr.shape[1], cols) == (r, c // cols)
    assert check_tiles(arr, sums, np.zeros_like(seen), np.arange(arr.shape[0]), 0, arr.shape[1], cols) is None


@settings(max_examples=100, deadline=None)
@given(arrays(), st.data())
def test_check_marks_exactly_the_tiles_it_checked(case, data):
    arr, cols = case
    sums = tile_hashes(arr, cols)
    seen = np.zeros(sums.shape, dtype=np.uint8)
    n = arr.shape[1]
    lo = data.draw(st.integers(0, n))
    hi = data.draw(st.integers(lo, n))
    rows = np.array(data.draw(st.lists(st.integers(0, arr.shape[0] - 1), max_size=4)) if arr.shape[0] else [], dtype=np.int64)
    assert check_tiles(arr, sums, seen, rows, lo, hi, cols) is None
    want = np.zeros_like(seen)
    if hi > lo:
        want[rows, lo // cols : (hi - 1) // cols + 1] = 1
    np.testing.assert_array_equal(seen, want)


def test_a_marked_tile_is_not_hashed_again():
    arr = np.arange(3 * 1500, dtype=np.uint16).reshape(3, 1500)
    sums = tile_hashes(arr)
    seen = np.zeros(sums.shape, dtype=np.uint8)
    assert check_tiles(arr, sums, seen, np.array([1]), 0, 600) is None
    arr[1, 10] += 1  # after its check: the bitmap says tile (1, 0) was checked
    assert check_tiles(arr, sums, seen, np.array([1]), 0, 600) is None
    assert check_tiles(arr, sums, np.zeros_like(seen), np.array([1]), 0, 600) == (1, 0)


def test_swapped_values_and_zeroed_tiles_are_detected():
    rng = np.random.default_rng(1)
    arr = rng.standard_normal((2, TILE_COLS), dtype=np.float32)
    sums = tile_hashes(arr)
    swapped = arr.copy()
    swapped[0, [3, 7]] = swapped[0, [7, 3]]
    assert tile_hashes(swapped)[0, 0] != sums[0, 0]
    assert tile_hashes(np.zeros_like(arr))[1, 0] != sums[1, 0]
    assert tile_hashes(arr.view(np.uint32))[0, 0] == sums[0, 0]  # floats hash by their bits


def test_bad_input_is_refused():
    with pytest.raises(ValidationError):
        tile_hashes(np.zeros(5, dtype=np.uint16))
    with pytest.raises(ValidationError):
        tile_hashes(np.zeros((2, 2), dtype=np.uint16), cols=2000)
    with pytest.raises(ValidationError):
        tile_hashes(np.zeros((2, 2), dtype=object))
    arr = np.zeros((2, 10), dtype=np.uint16)
    with pytest.raises(ValidationError):
        check_tiles(arr, tile_hashes(arr, 4), np.zeros((2, 2), dtype=np.uint8), np.array([0]), 0, 10, 4)
