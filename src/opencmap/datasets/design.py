"""The experimental design of the synthetic compendium: perturbagens, plates and well layouts.

A :class:`CompendiumSpec` says *how much* is profiled (cell lines, doses, times, library sizes);
:class:`Design` turns it into a perturbagen catalogue (compounds in mechanism-of-action classes,
shRNAs with shared seeds, cDNAs, controls) and a list of 384-well plates laid out like CMap's:
every plate group (one cell line, time point and plate set) is profiled on replicate plates
``X1..Xn`` with the same layout, so replicates are the same well on the replicate plates.

Everything here is deterministic: layouts come from generators keyed by the plate group, never
from a shared stream, so a plate can be built without building the others.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from opencmap.datasets.genes import TOUCHSTONE_CELLS, cell_table
from opencmap.errors import ConfigError

__all__ = [
    "MOA_CATALOGUE",
    "EXTRA_GENETIC_TARGETS",
    "CompendiumSpec",
    "SIZES",
    "spec_for",
    "PlateGroup",
    "Plate",
    "Design",
    "stream_key",
]

# (MOA class, target gene symbol or None, action on the target, broadly cytotoxic)
# "inhibitor"/"antagonist" act like a knock-down of the target; "agonist" like over-expression.
MOA_CATALOGUE: tuple[tuple[str, str | None, str, bool], ...] = (
    ("HDAC inhibitor", "HDAC2", "inhibitor", True),
    ("EGFR inhibitor", "EGFR", "inhibitor", False),
    ("PI3K inhibitor", "PIK3CA", "inhibitor", False),
    ("Topoisomerase inhibitor", "TOP2A", "inhibitor", True),
    ("CDK inhibitor", "CDK4", "inhibitor", True),
    ("Aurora kinase inhibitor", "AURKA", "inhibitor", True),
    ("PLK inhibitor", "PLK1", "inhibitor", True),
    ("AKT inhibitor", "AKT1", "inhibitor", False),
    ("IKK inhibitor", "IKBKB", "inhibitor", False),
    ("Glucocorticoid receptor agonist", "NR3C1", "agonist", False),
    ("PPAR receptor agonist", "PPARG", "agonist", False),
    ("DNA methyltransferase inhibitor", "DNMT1", "inhibitor", False),
    ("SRC inhibitor", "SRC", "inhibitor", False),
    ("BCR-ABL inhibitor", "ABL1", "inhibitor", False),
    ("IGF-1 inhibitor", "IGF1R", "inhibitor", False),
    ("CHK inhibitor", "CHEK1", "inhibitor", True),
    ("BCL inhibitor", "BCL2", "inhibitor", False),
    ("PARP inhibitor", "PARP1", "inhibitor", False),
    ("Cyclooxygenase inhibitor", "PTGS2", "inhibitor", False),
    ("Adrenergic receptor agonist", "ADRB2", "agonist", False),
    ("HMGCR inhibitor", "HMGCR", "inhibitor", False),
    ("HSP inhibitor", None, "inhibitor", True),
    ("MTOR inhibitor", None, "inhibitor", False),
    ("Proteasome inhibitor", None, "inhibitor", True),
    ("Tubulin inhibitor", None, "inhibitor", True),
    ("ATPase inhibitor", None, "inhibitor", False),
    ("MEK inhibitor", None, "inhibitor", False),
    ("RAF inhibitor", None, "inhibitor", False),
    ("JAK inhibitor", None, "inhibitor", False),
    ("Estrogen receptor antagonist", None, "antagonist", False),
)

# genes knocked down / over-expressed without a compound class in the catalogue
EXTRA_GENETIC_TARGETS: tuple[str, ...] = ("MYC", "TP53", "CCND1", "STAT3", "HIF1A", "NFE2L2", "SMAD3", "FOXO3", "NOTCH1")

PLATE_WELLS = 384
ROWS = "ABCDEFGHIJKLMNOP"
WELLS: tuple[str, ...] = tuple(f"{r}{c:02d}" for r in ROWS for c in range(1, 25))

# independent random streams: np.random.SeedSequence(seed, spawn_key=(stream, ...))
STREAMS = {
    "layout": 1,
    "plate": 2,
    "program": 3,
    "cell": 4,
    "compound": 5,
    "genes": 6,
    "sensitivity": 7,
    "hairpin": 8,
    "batch": 9,
}


def stream_key(name: str, *parts: int) -> tuple[int, ...]:
    """The SeedSequence spawn key of the named random stream and its integer parts."""
    return (STREAMS[name], *(int(p) for p in parts))


def _rng(seed: int, name: str, *parts: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=stream_key(name, *parts)))


@dataclass(frozen=True)
class CompendiumSpec:
    """How much the synthetic compendium profiles. All fields are plain values (JSON-able).

    The number of profiles is about ``n_replicates * (compound wells + genetic wells)`` where
    compound wells = ``cells * times * (compounds * doses + DMSO wells)`` and genetic wells =
    ``cells * (hairpins + cDNAs + controls)``.
    """

    name: str = "custom"
    cell_ids: tuple[str, ...] = TOUCHSTONE_CELLS
    compound_times: tuple[int, ...] = (6, 24)
    genetic_time: int = 96
    doses: tuple[float, ...] = (0.37, 1.11, 10.0)
    n_moa: int = 30
    compounds_per_moa: int = 3
    inactive_fraction: float = 0.1
    dual_fraction: float = 0.1
    n_sh_targets: int = 30
    hairpins_per_target: int = 4
    n_oe_targets: int = 30
    n_replicates: int = 3
    dmso_per_compound_plate: int = 18
    vector_per_genetic_plate: int = 12
    dmso_per_genetic_plate: int = 6
    n_inferred: int | None = 1000
    failed_well_rate: float = 0.004
    n_bead_batches: int = 12

    def validate(self) -> None:
        """Raise :class:`ConfigError` for impossible sizes."""
        problems = []
        if not self.cell_ids:
            problems.append("at least one cell line is needed")
        if not 1 <= self.n_moa <= len(MOA_CATALOGUE):
            problems.append(f"n_moa must be in 1..{len(MOA_CATALOGUE)}")
        if self.compounds_per_moa < 1:
            problems.append("compounds_per_moa must be >= 1")
        if not self.doses or not self.compound_times:
            problems.append("at least one dose and one compound time are needed")
        n_targets = len(_genetic_targets(len(MOA_CATALOGUE)))
        if not 0 <= self.n_sh_targets <= n_targets or not 0 <= self.n_oe_targets <= n_targets:
            problems.append(f"n_sh_targets and n_oe_targets must be in 0..{n_targets}")
        if self.n_sh_targets and self.hairpins_per_target < 1:
            problems.append("hairpins_per_target must be >= 1")
        if self.n_replicates < 1:
            problems.append("n_replicates must be >= 1")
        if not 0 <= self.inactive_fraction < 1 or not 0 <= self.dual_fraction < 1:
            problems.append("inactive_fraction and dual_fraction must be in [0, 1)")
        if self.dmso_per_compound_plate < 1 or self.dmso_per_compound_plate >= PLATE_WELLS:
            problems.append("dmso_per_compound_plate must be in 1..383")
        if self.vector_per_genetic_plate + self.dmso_per_genetic_plate >= PLATE_WELLS:
            problems.append("too many control wells per genetic plate")
        if not 0 <= self.failed_well_rate < 0.5:
            problems.append("failed_well_rate must be in [0, 0.5)")
        if problems:
            raise ConfigError("bad compendium size: " + "; ".join(problems))
        cell_table(self.cell_ids)  # unknown cell lines raise ConfigError

    def to_dict(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> CompendiumSpec:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ConfigError(f"unknown compendium spec field(s) {sorted(unknown)}")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**kw)  # type: ignore[arg-type]


SIZES: dict[str, CompendiumSpec] = {
    # unit tests: two cell lines, one time point; 1,128 profiles x 1,278 genes (6 MB) in ~1-2 s
    "tiny": CompendiumSpec(
        name="tiny",
        cell_ids=("A375", "MCF7"),
        compound_times=(24,),
        doses=(1.11, 10.0),
        n_moa=20,
        compounds_per_moa=3,
        n_sh_targets=8,
        hairpins_per_target=4,
        n_oe_targets=8,
        dmso_per_compound_plate=16,
        vector_per_genetic_plate=8,
        dmso_per_genetic_plate=4,
        n_inferred=300,
    ),
    # the embedded default: the 9 Touchstone lines, 30 MOAs, 90 compounds at 3 doses and 2 times,
    # 120 hairpins and 30 cDNAs; 20,088 profiles x 1,978 genes (978 landmarks + 1,000 inferred),
    # 160 MB, ~10-20 s
    "demo": CompendiumSpec(name="demo"),
}


def _profiles_per_compound(spec: CompendiumSpec) -> float:
    wells = len(spec.doses)
    # DMSO overhead of compound plates
    wells *= PLATE_WELLS / (PLATE_WELLS - spec.dmso_per_compound_plate)
    return wells * len(spec.compound_times) * len(spec.cell_ids) * spec.n_replicates


def spec_for(size: str = "demo", *, n_profiles: int | None = None, **overrides: object) -> CompendiumSpec:
    """The spec of a named size, optionally grown to about ``n_profiles`` profiles.

    ``n_profiles`` scales the compound library (``compounds_per_moa``) of the named size so the
    total is at least ``n_profiles`` (the genetic library and controls stay as they are).
    Other keyword arguments override spec fields (e.g. ``n_inferred=None`` for all genes).
    """
    if size not in SIZES:
        raise ConfigError(f"unknown size {size!r}; choose one of {sorted(SIZES)} (or pass n_profiles)")
    spec = dataclasses.replace(SIZES[size], **overrides) if overrides else SIZES[size]
    if n_profiles is not None:
        if n_profiles < 1:
            raise ConfigError(f"n_profiles must be positive, got {n_profiles}")
        genetic = Design(spec, seed=0).n_genetic_profiles
        per = _profiles_per_compound(spec) * spec.n_moa
        cpm = max(1, math.ceil((n_profiles - genetic) / per))
        spec = dataclasses.replace(spec, compounds_per_moa=cpm, name=f"{spec.name}-n{n_profiles}")
        # round down plate sets that the ceiling over-filled
        while cpm > 1 and Design(dataclasses.replace(spec, compounds_per_moa=cpm - 1), seed=0).n_profiles >= n_profiles:
            cpm -= 1
            spec = dataclasses.replace(spec, compounds_per_moa=cpm)
    spec.validate()
    return spec


def _genetic_targets(n_moa: int) -> list[str]:
    linked = [t for _, t, _, _ in MOA_CATALOGUE[:n_moa] if t is not None]
    return linked + [t for t in EXTRA_GENETIC_TARGETS if t not in linked]


@dataclass(frozen=True)
class PlateGroup:
    """One cell line x time x plate set: the replicate plates share this layout."""

    index: int
    kind: str  # "cp" (compounds) or "genetic" (shRNAs and cDNAs)
    prefix: str  # CPC or GEN
    set_number: int
    cell_id: str
    time: int
    treatments: tuple[tuple[int, float], ...]  # (perturbagen row, dose) of the treatment wells

    def plate_name(self, replicate: int) -> str:
        return f"{self.prefix}{self.set_number:03d}_{self.cell_id}_{self.time}H_X{replicate}"


@dataclass(frozen=True)
class Plate:
    """One replicate plate: its group, replicate number and bead batch."""

    index: int
    group: PlateGroup
    replicate: int
    bead_batch: int

    @property
    def rna_plate(self) -> str:
        return self.group.plate_name(self.replicate)

    @property
    def det_plate(self) -> str:
        return f"{self.rna_plate}_B{self.bead_batch}_DUO52HI53LO"


@dataclass
class Design:
    """Perturbagen catalogue and plates of a compendium spec (deterministic from ``seed``).

    Attributes
    ----------
    perts:
        One row per perturbagen: ``pert_id, pert_iname, pert_type, moa, target, action,
        programs, is_active, seed_sequence`` plus ``moa_index``, ``dual_moa_index`` (-1 = none),
        ``target_symbol`` (genetic and target-linked compounds) and ``library_index`` (stable
        index within its type, used to key its random stream).
    groups:
        The plate groups in output order.
    """

    spec: CompendiumSpec
    seed: int
    perts: pd.DataFrame = field(init=False)
    groups: list[PlateGroup] = field(init=False)

    def __post_init__(self) -> None:
        self._last_layout: tuple[int, pd.DataFrame] | None = None
        self.perts = self._catalogue()
        self.groups = self._groups()

    # ---- catalogue -------------------------------------------------------------------------
    def _catalogue(self) -> pd.DataFrame:
        spec = self.spec
        rows: list[dict[str, object]] = []

        def add(**kw: object) -> None:
            base = {
                "moa": "-666", "target": "-666", "action": "-666", "programs": "-666", "is_active": 0,
                "seed_sequence": "-666", "moa_index": -1, "dual_moa_index": -1, "target_symbol": "-666",
                "library_index": 0,
            }
            base.update(kw)
            rows.append(base)

        add(pert_id="DMSO", pert_iname="DMSO", pert_type="ctl_vehicle")
        add(pert_id="EMPTY_VECTOR", pert_iname="EMPTY_VECTOR", pert_type="ctl_vector")
        n_moa = spec.n_moa
        for m, (moa, target, action, _) in enumerate(MOA_CATALOGUE[:n_moa]):
            slug = moa.lower().replace(" ", "-").replace("/", "-")
            for k in range(spec.compounds_per_moa):
                lib = m * 100_000 + k  # stable across sizes: compound k of MOA m
                rng = _rng(self.seed, "compound", lib, 0)
                u_inactive, u_dual, dual_pick = rng.random(), rng.random(), int(rng.integers(n_moa - 1)) if n_moa > 1 else 0
                # the first two members of a class are always active so every class has a PCL
                active = k < 2 or u_inactive >= spec.inactive_fraction
                dual = -1
                if active and n_moa > 1 and u_dual < spec.dual_fraction:
                    dual = dual_pick if dual_pick < m else dual_pick + 1
                programs = [_moa_program(m)]
                if dual >= 0:
                    programs.append(_moa_program(dual))
                add(
                    pert_id=_brd_id(lib),
                    pert_iname=f"{slug}-{k + 1}",
                    pert_type="trt_cp",
                    moa=moa,
                    target=target or "-666",
                    action=action,
                    programs="|".join(programs) if active else "-666",
                    is_active=int(active),
                    moa_index=m,
                    dual_moa_index=dual,
                    target_symbol=target or "-666",
                    library_index=lib,
                )
        targets = _genetic_targets(n_moa)
        sh_targets = targets[: spec.n_sh_targets]
        seeds = _seed_assignment(len(sh_targets), spec.hairpins_per_target)
        for t, symbol in enumerate(sh_targets):
            for j in range(spec.hairpins_per_target):
                s = seeds[t, j]
                lib = t * 100 + j
                add(
                    pert_id=f"TRCN{10_000 + 7 * lib + 3:010d}",
                    pert_iname=symbol,
                    pert_type="trt_sh",
                    target=symbol,
                    action="knockdown",
                    programs=f"TARGET:{symbol}|SEED:{_seed_sequence(s)}",
                    is_active=1,
                    seed_sequence=_seed_sequence(s),
                    target_symbol=symbol,
                    library_index=lib,
                )
        for t, symbol in enumerate(targets[: spec.n_oe_targets]):
            add(
                pert_id=f"ccsbBroad304_{t + 1:05d}",
                pert_iname=symbol,
                pert_type="trt_oe",
                target=symbol,
                action="overexpression",
                programs=f"-TARGET:{symbol}",
                is_active=1,
                target_symbol=symbol,
                library_index=t,
            )
        df = pd.DataFrame(rows)
        for col in ("is_active", "moa_index", "dual_moa_index", "library_index"):
            df[col] = df[col].astype(np.int64)
        return df

    # ---- plates ------------------------------------------------------------------------------
    def _groups(self) -> list[PlateGroup]:
        spec = self.spec
        perts = self.perts
        groups: list[PlateGroup] = []
        cp = perts.index[perts["pert_type"] == "trt_cp"].to_numpy()
        sh = perts.index[perts["pert_type"] == "trt_sh"].to_numpy()
        oe = perts.index[perts["pert_type"] == "trt_oe"].to_numpy()
        cp_treatments = [(int(p), float(d)) for p in cp for d in spec.doses]
        cp_capacity = PLATE_WELLS - spec.dmso_per_compound_plate
        gen_capacity = PLATE_WELLS - spec.vector_per_genetic_plate - spec.dmso_per_genetic_plate
        sh_treatments = [(int(p), 1.0) for p in sh]
        oe_treatments = [(int(p), 1.0) for p in oe]
        n_cp_sets = math.ceil(len(cp_treatments) / cp_capacity)
        for c, cell in enumerate(spec.cell_ids):
            for time in spec.compound_times:
                for s in range(n_cp_sets):
                    chunk = tuple(cp_treatments[s::n_cp_sets])  # interleaved: each set mixes MOAs
                    groups.append(PlateGroup(len(groups), "cp", "CPC", s + 1, cell, time, chunk))
            # shRNAs and cDNAs share genetic plates (with empty-vector and DMSO controls)
            genetic = sh_treatments + oe_treatments
            n_sets = math.ceil(len(genetic) / gen_capacity)
            for s in range(n_sets):
                chunk = tuple(genetic[s::n_sets])
                groups.append(PlateGroup(len(groups), "genetic", "GEN", s + 1, cell, spec.genetic_time, chunk))
        return groups

    def plates(self) -> Iterator[Plate]:
        """All replicate plates in output order (group-major, then X1..Xn)."""
        n_rep = self.spec.n_replicates
        for g in self.groups:
            for r in range(1, n_rep + 1):
                index = g.index * n_rep + (r - 1)
                batch = 1 + int(_rng(self.seed, "batch", g.index, r).integers(self.spec.n_bead_batches))
                yield Plate(index, g, r, batch)

    @property
    def n_plates(self) -> int:
        return len(self.groups) * self.spec.n_replicates

    def wells_per_group(self, group: PlateGroup) -> int:
        return len(group.treatments) + len(self._controls(group))

    @property
    def n_profiles(self) -> int:
        return self.spec.n_replicates * sum(self.wells_per_group(g) for g in self.groups)

    @property
    def n_genetic_profiles(self) -> int:
        return self.spec.n_replicates * sum(self.wells_per_group(g) for g in self.groups if g.kind != "cp")

    def _controls(self, group: PlateGroup) -> list[tuple[int, float]]:
        dmso = int(np.flatnonzero(self.perts["pert_id"].to_numpy() == "DMSO")[0])
        vector = int(np.flatnonzero(self.perts["pert_id"].to_numpy() == "EMPTY_VECTOR")[0])
        if group.kind == "cp":
            return [(dmso, 0.1)] * self.spec.dmso_per_compound_plate
        return [(vector, 1.0)] * self.spec.vector_per_genetic_plate + [(dmso, 0.1)] * self.spec.dmso_per_genetic_plate

    def layout(self, group: PlateGroup) -> pd.DataFrame:
        """Well layout of a plate group: ``rna_well, well_index, pert_row, dose`` sorted by well (A01..P24)."""
        if self._last_layout is not None and self._last_layout[0] == group.index:
            return self._last_layout[1]
        layout = self._make_layout(group)
        self._last_layout = (group.index, layout)
        return layout

    def _make_layout(self, group: PlateGroup) -> pd.DataFrame:
        entries = list(group.treatments) + self._controls(group)
        rng = _rng(self.seed, "layout", group.index)
        positions = np.sort(rng.permutation(PLATE_WELLS)[: len(entries)])
        order = rng.permutation(len(entries))
        pert_row = np.array([entries[i][0] for i in order], dtype=np.int64)
        dose = np.array([entries[i][1] for i in order], dtype=np.float64)
        return pd.DataFrame({"rna_well": np.asarray(WELLS, dtype=object)[positions], "well_index": positions, "pert_row": pert_row, "dose": dose})


def _moa_program(m: int) -> str:
    moa, target, action, _ = MOA_CATALOGUE[m]
    if target is None:
        return f"MOA:{moa}"
    return f"TARGET:{target}" if action in ("inhibitor", "antagonist") else f"-TARGET:{target}"


def _brd_id(lib: int) -> str:
    # a bijection of 0..89,999,999 so ids look like Broad compound ids and never collide
    return f"BRD-K{(lib * 2_654_435_761 + 12_345_679) % 90_000_000 + 10_000_000:08d}"


def _seed_sequence(s: int) -> str:
    """A 7-nt seed name for seed family ``s`` (distinct for s < 4**7)."""
    return "".join("ACGU"[(s >> (2 * i)) & 3] for i in range(7))


def _seed_assignment(n_targets: int, per_target: int) -> np.ndarray:
    """Seed family of each hairpin (targets x hairpins): about 3 hairpins share a seed, never two of the same target."""
    if n_targets == 0 or per_target == 0:
        return np.zeros((n_targets, per_target), dtype=np.int64)
    n_seeds = max(per_target, round(n_targets * per_target / 3))
    while True:
        t = np.arange(n_targets)[:, None]
        j = np.arange(per_target)[None, :]
        seeds = (t + j * n_targets) % n_seeds
        if all(len(set(row)) == per_target for row in seeds.tolist()):
            return seeds
        n_seeds += 1
