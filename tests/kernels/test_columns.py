"""Shape helper of the scoring kernels."""

from __future__ import annotations

import numpy as np
import pytest

from opencmap.errors import ValidationError
from opencmap.kernels.columns import as_columns, like_input


def test_vector_round_trip_and_matrix_passthrough():
    col, was_1d = as_columns([1, 2, 3])
    assert col.shape == (3, 1) and col.dtype == np.float64 and was_1d
    np.testing.assert_array_equal(like_input(col * 2, was_1d), [2.0, 4.0, 6.0])
    m = np.arange(6, dtype=np.int16).reshape(3, 2)
    same, was_1d = as_columns(m, None)
    assert same is m and not was_1d and like_input(same, was_1d) is same


def test_other_ranks_are_rejected_with_the_name():
    with pytest.raises(ValidationError, match="scores"):
        as_columns(np.zeros((2, 2, 2)), name="scores")
