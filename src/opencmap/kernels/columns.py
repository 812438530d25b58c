"""Shape handling shared by the scoring kernels: accept (n,) or (n, k), compute on (n, k)."""

from __future__ import annotations

import numpy as np

from opencmap.errors import ValidationError

__all__ = ["as_columns", "like_input"]


def as_columns(x: np.ndarray, dtype: type | None = np.float64, *, name: str = "values") -> tuple[np.ndarray, bool]:
    """``x`` as a 2-D (n, k) array (a vector becomes one column) and whether it was 1-D.

    ``dtype=None`` keeps the input dtype. Anything but 1-D or 2-D raises ValidationError.
    """
    a = np.asarray(x) if dtype is None else np.asarray(x, dtype=dtype)
    if a.ndim == 1:
        return a[:, None], True
    if a.ndim != 2:
        raise ValidationError(f"{name} must be 1-D or 2-D, got shape {a.shape}")
    return a, False


def like_input(out: np.ndarray, was_1d: bool) -> np.ndarray:
    """Undo :func:`as_columns` on a result with the same rows: (n, 1) -> (n,) for 1-D input."""
    return out[:, 0] if was_1d else out
