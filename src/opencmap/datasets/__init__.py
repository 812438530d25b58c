"""The synthetic L1000 compendium: a deterministic generator with known biology, in GEO layout.

The real CMap compendium cannot ship, so opencmap embeds a generator that writes a compendium
with the same files and fields as GSE92742 (Level 3 GCTX + ``inst_info``, ``gene_info``,
``cell_info``, ``pert_info``), plus the ground truth needed to score answers: each perturbagen's
MOA, target and gene programs, a PCL GMT of the MOA classes, and the noise-free signature of every
condition (:func:`true_signatures`).

>>> from opencmap.datasets import make_compendium, true_signatures  # doctest: +SKIP
>>> comp = make_compendium("synthetic", "demo", seed=0)               # doctest: +SKIP
>>> truth = true_signatures(comp)                                     # doctest: +SKIP

Sizes: ``tiny`` (tests), ``demo`` (the embedded default) or any ``n_profiles`` (benchmarks).
"""

from __future__ import annotations

from opencmap.datasets.design import MOA_CATALOGUE, SIZES, CompendiumSpec, Design, spec_for
from opencmap.datasets.genes import TOUCHSTONE_CELLS, cell_table, gene_table, select_genes
from opencmap.datasets.make import (
    FILES,
    GENERATOR_VERSION,
    Compendium,
    build_model,
    make_compendium,
    open_compendium,
    true_signatures,
)
from opencmap.datasets.model import CompendiumModel, ModelParams

__all__ = [
    "make_compendium",
    "open_compendium",
    "true_signatures",
    "build_model",
    "Compendium",
    "CompendiumSpec",
    "CompendiumModel",
    "ModelParams",
    "Design",
    "SIZES",
    "spec_for",
    "MOA_CATALOGUE",
    "TOUCHSTONE_CELLS",
    "FILES",
    "GENERATOR_VERSION",
    "gene_table",
    "select_genes",
    "cell_table",
]
