"""The generative model of the synthetic compendium: baselines, gene programs, effects, noise.

Landmark expression of a well of cell line ``c`` on plate ``p`` (log2, Level 3-like)::

    x = mu_c + effect(perturbagen, c, dose, time) + A h + plate_p + batch_b + edge + noise

* ``mu_c``: a shared gene baseline (range ~4-14) plus a low-rank cell-line deviation, so cell
  lines differ in a correlated way.
* ``A h``: low-rank well-to-well biological variation (realistic gene-gene correlation).
* ``effect``: unit-norm *gene programs* over the 978 landmarks, scaled by ``program_scale``:
  each MOA acts through a shared program (target-linked MOAs share it with the shRNAs against the
  target; agonists and cDNAs act through its negative), modulated per cell line, with a
  compound-specific part, a late program that grows with time, a Hill dose response, per cell-line
  sensitivity (some MOAs act only in some lines) and a cytotoxicity program for cytotoxic classes.
  shRNAs add a strong *seed* program shared by hairpins with the same seed and knock their target
  gene down; cDNAs raise their target gene. Lentiviral wells share an infection program.
* plate, bead-batch and edge effects, an intensity-dependent plate scaling, Student-t noise,
  a few failed wells; values clipped to [0, 15].

Inferred genes are noisy linear functions of the (final) landmark values::

    y_g = mu_g + sum_j W_gj (x_j - mu0_j) + e_g,    e_g ~ N(0, s_g^2)

with 8 landmarks per gene; ``s_g`` is set so the designed inference R^2 is 0.6-0.95 for BING
genes and 0.02-0.25 for the other inferred genes (within a cell line).

All randomness comes from generators keyed by what they describe (a program name, a compound, a
cell line, a plate) via :func:`opencmap.datasets.design.stream_key`, so plates are independent and
the biology of a compound does not depend on the size of the compendium.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from opencmap.datasets.design import MOA_CATALOGUE, Design, Plate, _rng
from opencmap.datasets.genes import N_LANDMARKS, cell_table
from opencmap.errors import ValidationError

__all__ = ["ModelParams", "CompendiumModel", "PlateData"]


@dataclass(frozen=True)
class ModelParams:
    """Noise and effect sizes (log2 units). Defaults give replicate CC_Q75 like real Level 5."""

    program_scale: float = 9.0
    n_bio_factors: int = 8
    bio_sd: float = 0.10
    noise_sd: float = 0.28
    well_noise_sd: float = 0.25
    outlier_rate: float = 0.03
    outlier_scale: float = 3.0
    plate_sd: float = 0.15
    batch_sd: float = 0.10
    edge_scale: float = 2.0
    plate_slope_sd: float = 0.03
    seed_strength: tuple[float, float] = (1.3, 1.9)
    knockdown_log2: float = 2.5
    overexpression_log2: float = 3.0
    infection_strength: float = 0.6
    inferred_per_gene: int = 8
    bing_r2: tuple[float, float] = (0.6, 0.95)
    other_r2: tuple[float, float] = (0.02, 0.25)

    def to_dict(self) -> dict[str, object]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass
class PlateData:
    """One simulated plate: ``data`` is genes x wells float32, wells in layout order."""

    plate: Plate
    layout: pd.DataFrame
    data: np.ndarray
    failed: np.ndarray  # bool per well


def _crc(name: str) -> int:
    return zlib.crc32(name.encode())


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _frozen(v: np.ndarray) -> np.ndarray:
    """Mark a cached array read-only so callers cannot change the model by accident."""
    v.flags.writeable = False
    return v


def _time_amplitude(t: float) -> float:
    return float((1 - np.exp(-t / 10.0)) / (1 - np.exp(-24 / 10.0)))


def _late_weight(t: float) -> float:
    return float(0.5 * (1 - np.exp(-t / 24.0)))


class CompendiumModel:
    """The fitted-by-construction generative model of one compendium (spec + seed).

    Parameters
    ----------
    design:
        The experimental design (:class:`~opencmap.datasets.design.Design`).
    genes:
        Gene rows (``gene_table`` / ``select_genes`` output), landmarks first.
    params:
        Effect and noise sizes.
    """

    def __init__(self, design: Design, genes: pd.DataFrame, params: ModelParams | None = None) -> None:
        self.design = design
        self.spec = design.spec
        self.seed = design.seed
        self.params = params or ModelParams()
        self.genes = genes.reset_index(drop=True)
        lm = self.genes["pr_is_lm"].to_numpy() == 1
        if lm.sum() != N_LANDMARKS or not lm[:N_LANDMARKS].all():
            raise ValidationError("genes must hold the 978 landmarks first (use select_genes / gene_table)")
        self.n_genes = len(self.genes)
        self._cells = cell_table()["cell_id"].tolist()
        self._symbol_row = {s: i for i, s in enumerate(self.genes["pr_gene_symbol"].iloc[:N_LANDMARKS])}
        self._build_genes()
        self._perts = design.perts.to_dict("records")

    # ---- genes -----------------------------------------------------------------------------------
    def _build_genes(self) -> None:
        p = self.params
        L = N_LANDMARKS
        rng = _rng(self.seed, "genes", 0)
        self.mu0 = 4.0 + 10.0 * rng.beta(2.5, 2.2, size=L)
        self.noise_sd = p.noise_sd * (0.7 + 0.6 * (1 - (self.mu0 - 4.0) / 10.0))
        self.bio_loadings = rng.standard_normal((L, p.n_bio_factors)) * p.bio_sd
        self.cell_loadings = rng.standard_normal((L, 6)) * 0.35
        self.cell_indep_sd = 0.3
        # inferred genes: generated for the whole bundled AIG space, then subset by Entrez id
        from opencmap.datasets.genes import gene_table

        full = gene_table()
        inf_full = full[full["pr_is_lm"] == 0].reset_index(drop=True)
        n_inf_full = len(inf_full)
        k = p.inferred_per_gene
        # k distinct landmarks per gene, drawn in blocks to keep memory small
        idx = np.concatenate(
            [np.argpartition(rng.random((min(1024, n_inf_full - a), L)), k, axis=1)[:, :k].copy() for a in range(0, n_inf_full, 1024)]
        )
        w = rng.standard_normal((n_inf_full, k)) / np.sqrt(k)
        mu_inf = 4.0 + 10.0 * rng.beta(2.5, 2.2, size=n_inf_full)
        u = rng.random(n_inf_full)
        bing = inf_full["pr_is_bing"].to_numpy() == 1
        lo = np.where(bing, p.bing_r2[0], p.other_r2[0])
        hi = np.where(bing, p.bing_r2[1], p.other_r2[1])
        r2 = lo + (hi - lo) * u
        # variance of sum_j w_j x_j among the wells of one cell line (biological and technical
        # parts): the designed R^2 holds within a cell line and is higher across cell lines
        bio_part = np.einsum("gk,gkf->gf", w, self.bio_loadings[idx])
        diag = np.einsum("gk,gk->g", w**2, self.noise_sd[idx] ** 2)
        signal_var = (bio_part**2).sum(1) + diag
        inf_sd = np.sqrt(signal_var * (1 - r2) / r2)
        pos = {g: i for i, g in enumerate(inf_full["pr_gene_id"])}
        keep = np.array([pos[g] for g in self.genes["pr_gene_id"].iloc[L:]], dtype=np.int64)
        n_inf = len(keep)
        self.inferred_r2 = r2[keep]
        self.inferred_mu = mu_inf[keep]
        self.inferred_sd = inf_sd[keep]
        self.inferred_weights = sp.csr_matrix(
            (w[keep].ravel(), idx[keep].ravel(), np.arange(0, n_inf * k + 1, k)), shape=(n_inf, L)
        )
        self._weights_32 = self.inferred_weights.astype(np.float32)
        self._mu0_32 = self.mu0.astype(np.float32)
        self._bio_loadings_32 = self.bio_loadings.astype(np.float32)
        self._inferred_mu_32 = self.inferred_mu.astype(np.float32)
        self._inferred_sd_32 = self.inferred_sd.astype(np.float32)

    def inference_r2(self) -> pd.Series:
        """Designed inference R^2 of each inferred gene (index ``pr_gene_id``)."""
        return pd.Series(self.inferred_r2, index=self.genes["pr_gene_id"].iloc[N_LANDMARKS:].to_numpy(), name="r2")

    @functools.cache
    def cell_baseline(self, cell_id: str) -> np.ndarray:
        """Landmark baseline (log2) of a cell line, shape (978,)."""
        rng = _rng(self.seed, "cell", self._cells.index(cell_id))
        z = rng.standard_normal(self.cell_loadings.shape[1])
        return self.mu0 + self.cell_loadings @ z + self.cell_indep_sd * rng.standard_normal(N_LANDMARKS)

    # ---- programs --------------------------------------------------------------------------------
    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one model per compendium, bounded cache
    def program(self, name: str) -> np.ndarray:
        """Unit-norm landmark vector of a named gene program (e.g. ``TARGET:HDAC2``, ``SEED:ACGUACG``)."""
        rng = _rng(self.seed, "program", _crc(name))
        L = N_LANDMARKS
        n_support = int(rng.integers(60, 160))
        support = rng.choice(L, size=n_support, replace=False)
        v = 0.08 * rng.standard_normal(L)
        v[support] += rng.standard_normal(n_support) * rng.lognormal(0.0, 0.35, n_support)
        # partly along the natural co-expression axes, as real responses are
        v += 0.3 * _unit(self.bio_loadings @ rng.standard_normal(self.bio_loadings.shape[1]))
        return _frozen(_unit(v))

    @functools.lru_cache(maxsize=8192)  # noqa: B019
    def cell_program(self, name: str, cell_id: str) -> np.ndarray:
        """A program as it acts in one cell line: the shared program plus a context-specific part."""
        rng = _rng(self.seed, "program", _crc(name), 1 + self._cells.index(cell_id))
        return _frozen(_unit(self.program(name) + 0.35 * _unit(rng.standard_normal(N_LANDMARKS))))

    @functools.lru_cache(maxsize=4096)  # noqa: B019
    def sensitivity(self, name: str, cell_id: str) -> float:
        """How strongly a program acts in a cell line (0 = not at all; ~1 typical)."""
        base = _rng(self.seed, "sensitivity", _crc(name))
        selective = base.random() < (0.3 if name.startswith("MOA:") or name.startswith("TARGET:") else 0.0)
        responsive = base.random(len(self._cells)) < 0.45
        c = self._cells.index(cell_id)
        if selective and not responsive[c]:
            return 0.0
        return float(np.exp(0.3 * _rng(self.seed, "sensitivity", _crc(name), 1 + c).standard_normal()))

    def responsive_cells(self, name: str, cell_ids: tuple[str, ...] | list[str]) -> list[str]:
        """Cell lines (of ``cell_ids``) where the program acts."""
        return [c for c in cell_ids if self.sensitivity(name, c) > 0]

    @functools.lru_cache(maxsize=512)  # noqa: B019
    def compound_parameters(self, lib: int) -> tuple[float, float, float, float, np.ndarray]:
        """Dose-response and identity of compound ``lib``: ``(emax, ec50_um, hill, own, member_vector)``.

        ``own`` weighs the compound's member-specific unit vector against its class program.
        """
        rng = _rng(self.seed, "compound", lib, 1)
        emax = float(np.exp(0.35 * rng.standard_normal()))
        ec50 = float(np.exp(rng.uniform(np.log(0.1), np.log(30.0))))
        hill = float(rng.uniform(0.8, 2.0))
        own = float(rng.uniform(0.3, 0.7))
        member = _frozen(_unit(rng.standard_normal(N_LANDMARKS)))
        return emax, ec50, hill, own, member

    @functools.lru_cache(maxsize=2048)  # noqa: B019
    def _hairpin_params(self, lib: int) -> tuple[float, float]:
        rng = _rng(self.seed, "hairpin", lib)
        return float(rng.uniform(0.5, 1.0)), float(rng.uniform(*self.params.seed_strength))

    # ---- effects ---------------------------------------------------------------------------------
    def _signed_program(self, token: str, cell_id: str) -> tuple[np.ndarray, str]:
        sign = -1.0 if token.startswith("-") else 1.0
        name = token.lstrip("-")
        return sign * self.cell_program(name, cell_id), name

    @functools.lru_cache(maxsize=512)  # noqa: B019 - replicate plates reuse a plate group's effects
    def _cached_effect(self, pert_row: int, cell_id: str, dose: float, time: float) -> np.ndarray:
        return _frozen(self.landmark_effect(pert_row, cell_id, dose, time))

    def landmark_effect(self, pert_row: int, cell_id: str, dose: float, time: float, *, infection: bool = True) -> np.ndarray:
        """Noise-free effect (log2, vs. untreated) of a perturbagen on the 978 landmarks."""
        p = self.params
        pert = self._perts[pert_row]
        kind = pert["pert_type"]
        lib = int(pert["library_index"])
        out = np.zeros(N_LANDMARKS)
        if kind in ("trt_sh", "trt_oe", "ctl_vector") and infection:
            out += p.infection_strength * p.program_scale * self.program("INFECTION")
        if kind == "trt_cp" and int(pert["is_active"]):
            emax, ec50, hill, own, member = self.compound_parameters(lib)
            m = int(pert["moa_index"])
            a = emax * dose**hill / (dose**hill + ec50**hill) * _time_amplitude(time)
            tokens = pert["programs"].split("|")
            vec, name = self._signed_program(tokens[0], cell_id)
            sens = self.sensitivity(name, cell_id)
            total = sens * vec
            if len(tokens) > 1:
                dvec, dname = self._signed_program(tokens[1], cell_id)
                total = total + 0.7 * self.sensitivity(dname, cell_id) * dvec
            if sens > 0:
                total = total + own * member * sens
                total = total + _late_weight(time) * sens * self.cell_program(f"LATE:{MOA_CATALOGUE[m][0]}", cell_id)
            out += p.program_scale * a * total
            if MOA_CATALOGUE[m][3] and sens > 0:
                tox = dose**2 / (dose**2 + (3 * ec50) ** 2) * _late_weight(time) * 2
                out += p.program_scale * 0.8 * tox * self.program("CYTOTOX")
        elif kind == "trt_sh":
            kd, seed_strength = self._hairpin_params(lib)
            symbol = pert["target_symbol"]
            amp = _time_amplitude(time)
            vec, name = self._signed_program(f"TARGET:{symbol}", cell_id)
            out += p.program_scale * amp * kd * self.sensitivity(name, cell_id) * vec
            out += p.program_scale * amp * seed_strength * self.cell_program(f"SEED:{pert['seed_sequence']}", cell_id)
            out[self._symbol_row[symbol]] -= p.knockdown_log2 * kd
        elif kind == "trt_oe":
            symbol = pert["target_symbol"]
            strength = float(_rng(self.seed, "hairpin", 1_000_000 + lib).uniform(0.4, 0.9))
            vec, name = self._signed_program(f"-TARGET:{symbol}", cell_id)
            out += p.program_scale * _time_amplitude(time) * strength * self.sensitivity(name, cell_id) * vec
            out[self._symbol_row[symbol]] += p.overexpression_log2
        return out

    def infer(self, landmarks: np.ndarray) -> np.ndarray:
        """Noise-free inferred-gene part ``W (x - mu0)`` for landmark columns (978 x n) -> (n_inf x n)."""
        return np.asarray(self.inferred_weights @ landmarks)

    def true_signature(self, pert_row: int, cell_id: str, dose: float, time: float) -> np.ndarray:
        """Noise-free signature over all gene rows (log2 change vs. the plate's controls).

        Lentiviral infection effects, shared with the empty-vector controls, are left out.
        """
        lm = self.landmark_effect(pert_row, cell_id, dose, time, infection=False)
        return np.concatenate([lm, self.infer(lm[:, None])[:, 0]])

    # ---- plates ----------------------------------------------------------------------------------
    def simulate_plate(self, plate: Plate) -> PlateData:
        """Simulate one replicate plate (deterministic from the seed and the plate).

        ``data`` is a (genes x wells) float32 view of a wells-major array, so writing it to
        GCTX (stored wells-major) needs no transpose copy.
        """
        p = self.params
        group = plate.group
        layout = self.design.layout(group)
        m = len(layout)
        rng = _rng(self.seed, "plate", plate.index)
        cell = group.cell_id
        time = float(group.time)
        keys = list(zip(layout["pert_row"].tolist(), layout["dose"].tolist(), strict=True))
        unique = list(dict.fromkeys(keys))
        position = {k: i for i, k in enumerate(unique)}
        effects = np.stack([self._cached_effect(int(r), cell, float(d), time) for r, d in unique], axis=1)
        x = effects[:, [position[k] for k in keys]].astype(np.float32)
        # gene-wise constants: cell baseline, plate offset (partly along co-expression axes), bead batch
        k_bio = self.bio_loadings.shape[1]
        plate_z = rng.standard_normal(k_bio) / (max(p.bio_sd, 1e-9) * np.sqrt(k_bio))
        offset = self.cell_baseline(cell) + p.plate_sd * np.einsum("gf,f->g", self.bio_loadings, plate_z)
        offset += p.plate_sd * 0.5 * rng.standard_normal(N_LANDMARKS)
        offset += p.batch_sd * _rng(self.seed, "batch", 1_000_000 + plate.bead_batch).standard_normal(N_LANDMARKS)
        x += offset.astype(np.float32)[:, None]
        # well-to-well biological variation (low rank) and edge effects
        # einsum, not matmul: a threaded BLAS call this small costs more than it computes
        x += np.einsum("gf,fm->gm", self._bio_loadings_32, rng.standard_normal((k_bio, m), dtype=np.float32))
        wells = layout["well_index"].to_numpy()
        row, col = wells // 24, wells % 24
        edge = np.flatnonzero((row == 0) | (row == 15) | (col == 0) | (col == 23))
        edge_amp = p.edge_scale * (0.5 + rng.random())
        x[:, edge] += (edge_amp * self.program("EDGE")).astype(np.float32)[:, None]
        # heavy-tailed noise: well quality varies, and a few values are far off
        noise = rng.standard_normal((N_LANDMARKS, m), dtype=np.float32)
        n_out = int(rng.binomial(noise.size, p.outlier_rate))
        noise.flat[rng.integers(0, noise.size, n_out)] *= np.float32(p.outlier_scale)
        well_scale = np.exp(p.well_noise_sd * rng.standard_normal(m)).astype(np.float32)
        noise *= self.noise_sd.astype(np.float32)[:, None]
        noise *= well_scale[None, :]
        x += noise
        del noise
        slope = np.float32(1.0 + p.plate_slope_sd * rng.standard_normal())
        x -= np.float32(9.0)
        x *= slope
        x += np.float32(9.0)
        failed = rng.random(m) < self.spec.failed_well_rate
        if failed.any():
            bad = rng.standard_normal((N_LANDMARKS, int(failed.sum())), dtype=np.float32)
            x[:, failed] = 5.5 + 0.35 * (x[:, failed] - 9.0) + 1.2 * bad
        np.clip(x, 0.0, 15.0, out=x)
        out = np.empty((m, self.n_genes), dtype=np.float32)  # wells-major
        data = out.T
        data[:N_LANDMARKS] = x
        if self.n_genes > N_LANDMARKS:
            centred = x - self._mu0_32[:, None]
            y = self._weights_32 @ centred
            y += self._inferred_mu_32[:, None]
            eps = rng.standard_normal(y.shape, dtype=np.float32)
            eps *= self._inferred_sd_32[:, None]
            y += eps
            np.clip(y, 0.0, 15.0, out=y)
            data[N_LANDMARKS:] = y
        return PlateData(plate, layout, data, failed)
