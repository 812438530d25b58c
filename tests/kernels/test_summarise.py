"""Group max-quantile summaries: spec example 9.8 and a per-group loop over percentile.maxq."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opencmap.errors import ValidationError
from opencmap.kernels.percentile import prctile
from opencmap.kernels.summarise import group_maxq


def plain_maxq(x):
    """maxq written out from the spec: q67 if |q33| < |q67| else q33 (MATLAB percentiles)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return np.nan
    lo, hi = prctile(x, 33), prctile(x, 67)
    return hi if abs(lo) < abs(hi) else lo


def test_example_9_8_maxq():
    values = np.array([-1.2, 0.3, 0.8, 1.5, -2.0, -1.5, 0.4, 1.5])
    codes = np.array([0, 0, 0, 0, 1, 1, 1, 2])
    out = group_maxq(values, codes, 4)
    np.testing.assert_allclose(out[:3], [0.926, -1.755, 1.5], atol=1e-9)
    assert np.isnan(out[3])  # empty group


def test_columns_min_members_and_excluded_rows():
    values = np.array([[1.0, np.nan], [2.0, 5.0], [np.nan, np.nan], [4.0, 1.0]])
    codes = np.array([0, 0, 1, -1])
    out = group_maxq(values, codes, 2, min_members=2)
    assert out[0, 0] == pytest.approx(plain_maxq([1.0, 2.0]))
    assert np.isnan(out[0, 1])  # only one non-NaN member in that column
    assert np.isnan(out[1]).all()
    out1 = group_maxq(values, codes, 2)
    assert out1[0, 1] == 5.0  # a single member passes through


def test_bad_codes():
    with pytest.raises(ValidationError):
        group_maxq(np.zeros(3), np.array([0, 1, 5]), 2)
    with pytest.raises(ValidationError):
        group_maxq(np.zeros(3), np.array([0.0, 1.0, 1.0]), 2)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(1, 8), st.integers(1, 3))
def test_matches_per_group_loop(seed, n_rows, n_groups, min_members):
    rng = np.random.default_rng(seed)
    values = np.round(rng.standard_normal((n_rows, 3)), 1)  # rounding makes ties
    values[rng.random(values.shape) < 0.2] = np.nan
    codes = rng.integers(-1, n_groups, n_rows)
    out = group_maxq(values, codes, n_groups, min_members=min_members)
    for g in range(n_groups):
        for j in range(3):
            member = values[codes == g, j]
            expected = plain_maxq(member) if np.count_nonzero(~np.isnan(member)) >= min_members else np.nan
            np.testing.assert_allclose(out[g, j], expected, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 60), st.integers(1, 10), st.booleans())
def test_layout_with_row_map_and_parallel_path(seed, n_entries, n_groups, parallel):
    """A layout reading rows through a map (rows repeat across groups, as PCLs) equals group_maxq of
    the gathered values; the parallel kernel equals the serial one."""
    import opencmap.kernels.summarise as summ

    rng = np.random.default_rng(seed)
    values = np.round(rng.standard_normal((15, 4)), 1).astype(np.float32)
    values[rng.random(values.shape) < 0.15] = np.nan
    rows = rng.integers(0, 15, n_entries)
    codes = rng.integers(-1, n_groups, n_entries)
    layout = summ.group_layout(codes, n_groups, rows=rows)
    par = {"threads": 2, "parallel_min": 0} if parallel else {}  # the parallel path even for tiny inputs
    got = summ.group_maxq_layout(values, layout, min_members=2, **par)
    np.testing.assert_array_equal(got, group_maxq(values[rows], codes, n_groups, min_members=2))
    for g in range(n_groups):
        for j in range(4):
            members = values[rows[codes == g], j]
            want = plain_maxq(members) if np.count_nonzero(~np.isnan(members)) >= 2 else np.nan
            np.testing.assert_allclose(got[g, j], want, rtol=0, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(30, 400), st.integers(1, 4))
def test_large_groups_sorted_not_inserted(seed, n_rows, n_groups):
    """Groups above the insertion limit (controls hold thousands) give the per-group loop's values."""
    import opencmap.kernels.summarise as summ

    rng = np.random.default_rng(seed)
    values = np.round(rng.standard_normal((n_rows, 2)), 1)
    values[rng.random(values.shape) < 0.1] = np.nan
    codes = rng.integers(0, n_groups, n_rows)
    assert np.bincount(codes).max() > summ._INSERTION_MAX or n_rows < 33 * n_groups
    out = group_maxq(values, codes, n_groups)
    for g in range(n_groups):
        for j in range(2):
            np.testing.assert_allclose(out[g, j], plain_maxq(values[codes == g, j]), atol=1e-12)
