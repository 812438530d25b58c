"""Lamb 2006 KS connectivity score: spec example 9.4 and a brute-force definition."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opencmap.errors import ValidationError
from opencmap.kernels.lamb import connectivity_scores, instance_scores, ks_score

# example 9.4: (up positions, down positions, ks_up, ks_dn, s, S)
EXAMPLE = [
    ([1, 3, 5], [7, 9, 10], 0.5, -0.7, 1.2, 1.0),
    ([2, 4, 6], [1, 3, 5], 0.4, 0.5, 0.0, 0.0),
    ([8, 9, 10], [1, 2, 3], -0.8, 0.7, -1.5, -1.0),
    ([1, 4, 7], [5, 8, 10], 0.3, -0.5, 0.8, 0.666667),
]


def test_example_9_4():
    up = np.array([e[0] for e in EXAMPLE]).T
    dn = np.array([e[1] for e in EXAMPLE]).T
    ks_up = ks_score(up, 10)
    ks_dn = ks_score(dn, 10)
    np.testing.assert_allclose(ks_up, [e[2] for e in EXAMPLE], atol=1e-12)
    np.testing.assert_allclose(ks_dn, [e[3] for e in EXAMPLE], atol=1e-12)
    s = instance_scores(ks_up, ks_dn)
    np.testing.assert_allclose(s, [e[4] for e in EXAMPLE], atol=1e-12)
    np.testing.assert_allclose(connectivity_scores(s), [e[5] for e in EXAMPLE], atol=1e-6)


def test_single_list_order_and_missing_tags():
    assert ks_score(np.array([5, 1, 3]), 10) == pytest.approx(0.5)
    both = ks_score(np.array([[1, 1], [3, 0], [5, 5]]), 10)
    assert both[0] == pytest.approx(0.5)
    assert both[1] == pytest.approx(ks_score(np.array([1, 5]), 10))
    assert np.isnan(ks_score(np.zeros((2, 1), dtype=int), 10)[0])
    with pytest.raises(ValidationError):
        ks_score(np.array([11]), 10)


def test_connectivity_scores_nan_and_all_zero():
    np.testing.assert_array_equal(connectivity_scores(np.array([0.0, np.nan, 2.0, -1.0])), [0.0, np.nan, 1.0, -1.0])
    np.testing.assert_array_equal(connectivity_scores(np.zeros(3)), np.zeros(3))


def brute_ks(positions, n):
    """Largest signed deviation of the tag ECDF from the uniform one, at every list position."""
    t = len(positions)
    tags = set(positions)
    best_up = best_dn = -np.inf
    seen = 0
    for pos in range(1, n + 1):
        if pos in tags:
            best_dn = max(best_dn, pos / n - seen / t)  # just before the tag
            seen += 1
            best_up = max(best_up, seen / t - pos / n)  # just after it
    return best_up if best_up > best_dn else -best_dn


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 60).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(1, n), min_size=1, max_size=n))))
def test_matches_brute_force(case):
    n, tags = case
    positions = np.array(sorted(tags))[::-1]
    assert ks_score(positions, n) == pytest.approx(brute_ks(sorted(tags), n), abs=1e-12)
