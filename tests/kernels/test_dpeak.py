"""Peak calling and assignment kernels (spec §1.2-1.3) on designed bead groups."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from opencmap.kernels.dpeak import (
    METHOD_KMEANS,
    METHOD_KSPEAK,
    METHOD_MEDIAN,
    METHOD_MISSING,
    assign_peaks,
    detect_peaks,
    n_uniforms,
)

PARAMS = (4.0, 15.0, 14.0, 20, 4, 5, 10.0, 10.0, 65.0, 35.0)


def run(groups: list[np.ndarray], *, force: list[bool] | None = None, kspeak: bool = False, seed: int = 0):
    values = np.concatenate([np.asarray(g, dtype=float) for g in groups]) if groups else np.zeros(0)
    offsets = np.concatenate([[0], np.cumsum([len(g) for g in groups])]).astype(np.int64)
    u = np.random.default_rng(seed).random((len(groups), 3, 5, 4))
    fm = np.array(force if force is not None else [False] * len(groups), dtype=bool)
    res = detect_peaks(values, offsets, u, fm, *PARAMS, kspeak)
    assigned = assign_peaks(*res[:4], res[5], res[6], res[7], 10.0, 10.0)
    return res, assigned


def two_peaks(rng: np.random.Generator, hi: float, lo: float, n_hi: int, n_lo: int, sd: float = 0.1) -> np.ndarray:
    return np.round(2 ** np.concatenate([rng.normal(np.log2(hi), sd, n_hi), rng.normal(np.log2(lo), sd, n_lo)]))


def matlab_round_pow2(v: float) -> float:
    return float(np.floor(2**v + 0.5))


def test_two_peaks_assigned_by_support() -> None:
    rng = np.random.default_rng(0)
    group = two_peaks(rng, 300, 3000, 60, 30)  # the dimmer gene has more beads: it is "hi"
    (pkexp, pksup, pkpct, npeak, tot, ngood, med, meth), (value, support, pct) = run([group])
    assert meth[0] == METHOD_KMEANS and npeak[0] == 2
    assert pksup[0, :2].tolist() == [60, 30]
    x = np.sort(np.log2(group))
    assert pkexp[0, 0] == matlab_round_pow2(np.median(x[:60]))
    assert pkexp[0, 1] == matlab_round_pow2(np.median(x[60:]))
    assert value[0].tolist() == pkexp[0, :2].tolist()
    assert support[0].tolist() == [60, 30]
    np.testing.assert_allclose(pct[0], [100 * 60 / 90, 100 * 30 / 90])
    assert tot[0] == ngood[0] == 90


def test_window_median_missing_and_not_duo() -> None:
    rng = np.random.default_rng(1)
    few = np.array([100.0] * 10 + [8.0] * 30 + [70000.0] * 5)  # 10 good beads, the rest outside [4, 15]
    not_duo = two_peaks(rng, 500, 5000, 50, 40)
    (pkexp, pksup, _, npeak, tot, ngood, med, meth), (value, support, _) = run(
        [few, np.zeros(0), not_duo], force=[False, False, True]
    )
    assert meth.tolist() == [METHOD_MEDIAN, METHOD_MISSING, METHOD_MEDIAN]
    assert (tot.tolist(), ngood.tolist()) == ([45, 0, 90], [10, 0, 90])
    assert value[0].tolist() == [100.0, 100.0] and support[0].tolist() == [10, 10]
    assert value[1].tolist() == [1.0, 1.0] and support[1].tolist() == [0, 0]
    x = np.log2(not_duo)
    assert value[2, 0] == value[2, 1] == matlab_round_pow2(np.median(x))
    assert support[2].tolist() == [90, 90]


def test_not_duo_uses_window_up_to_14() -> None:
    group = np.array([1000.0] * 30 + [20000.0] * 25)  # log2 20000 = 14.3: outside [4, 14]
    (_, _, _, _, _, ngood, med, _), (value, _, _) = run([group, group], force=[True, False])
    assert ngood[0] == 30 and value[0, 0] == 1000.0
    assert ngood[1] == 55


def test_unsupported_second_peak_splits_support() -> None:
    group = np.array([800.0] * 25 + [6000.0] * 3)  # no k gives two viable (>= 10 beads) clusters
    (pkexp, pksup, _, npeak, _, ngood, med, meth), (value, support, pct) = run([group])
    assert meth[0] == METHOD_KMEANS and npeak[0] == 1
    assert pkexp[0, 0] == med[0] == 800.0 and pksup[0, 0] == 28
    assert value[0].tolist() == [800.0, 800.0]
    assert support[0].tolist() == [14, 14]  # floor(28 / 2) each
    np.testing.assert_allclose(pct[0], 100 * 14 / 28)


def test_kspeak_two_peaks() -> None:
    rng = np.random.default_rng(4)
    group = two_peaks(rng, 400, 4000, 50, 25, sd=0.15)
    (pkexp, pksup, _, npeak, _, ngood, _, meth), (value, support, _) = run([group], kspeak=True)
    assert meth[0] == METHOD_KSPEAK and npeak[0] >= 2
    assert abs(np.log2(value[0, 0] / 400)) < 0.2 and abs(np.log2(value[0, 1] / 4000)) < 0.2
    assert pksup[0, 0] >= pksup[0, 1]
    assert pksup[0, : npeak[0]].sum() == ngood[0] == 75


def test_reproducible_for_a_seed() -> None:
    rng = np.random.default_rng(5)
    groups = [two_peaks(rng, 300, 900, 40, 25, sd=0.4) for _ in range(20)]
    a = run(groups, seed=11)[1][0]
    b = run(groups, seed=11)[1][0]
    np.testing.assert_array_equal(a, b)
    assert n_uniforms() == 60


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 120), min_size=1, max_size=6),
    seed=st.integers(0, 2**32 - 1),
    kspeak=st.booleans(),
)
def test_invariants(sizes: list[int], seed: int, kspeak: bool) -> None:
    rng = np.random.default_rng(seed)
    groups = [np.round(2 ** rng.uniform(3, 16, n)) for n in sizes]
    (pkexp, pksup, pkpct, npeak, tot, ngood, med, meth), (value, support, pct) = run(groups, seed=seed, kspeak=kspeak)
    for g, grp in enumerate(groups):
        x = np.log2(np.maximum(grp, 1))
        n_window = int(((x >= 4) & (x <= 15)).sum())
        assert tot[g] == len(grp)
        assert 1 <= npeak[g] <= 4
        assert ngood[g] <= n_window
        if meth[g] == METHOD_KMEANS:
            assert pksup[g, : npeak[g]].sum() == ngood[g]
            assert np.all(pksup[g, : npeak[g]] >= 10)
            np.testing.assert_allclose(pkpct[g, : npeak[g]].sum(), 100.0)
            assert np.all(np.diff(pksup[g, : npeak[g]]) <= 0)
        if meth[g] in (METHOD_KMEANS, METHOD_KSPEAK):
            assert np.all((pkexp[g, : npeak[g]] >= 16) & (pkexp[g, : npeak[g]] <= 32768))
        if meth[g] == METHOD_MEDIAN:
            assert ngood[g] == n_window and (n_window < 20)
        assert np.all(value[g] >= 1) and np.all(support[g] >= 0)
