"""Synthetic Level 5 compendium with planted connections, for the query engine tests.

Design: 400 genes (100 landmarks, 300 BING), three cell lines, 12 compounds x 3 cells x 2 doses
plus vehicle controls. Compounds 0-3 carry program A (up on genes A_up, down on A_dn), 4-7 carry
program B, 8-11 are noise. A query made of program A's genes must rank compounds 0-3 first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from opencmap.core.gct import GCT

PCL = {"PCL_A": ["BRD-000", "BRD-001", "BRD-002", "BRD-003"], "PCL_B": ["BRD-004", "BRD-005", "BRD-006"]}


# ---------------------------------------------------------------------------------- data
N_GENES, N_LM, N_BING = 400, 100, 300
CELLS = ("A375", "MCF7", "PC3")
N_COMPOUNDS = 12


def make_level5(seed: int = 0, *, effect: float = 3.0) -> tuple[GCT, pd.DataFrame, dict[str, list[str]]]:
    """(GCT genes x signatures, sig_info, programs {name: gene ids}) with planted programs."""
    rng = np.random.default_rng(seed)
    gene_ids = [str(1000 + i) for i in range(N_GENES)]
    genes = pd.DataFrame(
        {
            "pr_gene_symbol": [f"GENE{i}" for i in range(N_GENES)],
            "pr_is_lm": [1 if i < N_LM else 0 for i in range(N_GENES)],
            "pr_is_bing": [1 if i < N_BING else 0 for i in range(N_GENES)],
        },
        index=pd.Index(gene_ids, name="rid"),
    )
    perm = rng.permutation(N_BING)
    programs = {
        "A_up": [gene_ids[i] for i in perm[:40]],
        "A_dn": [gene_ids[i] for i in perm[40:80]],
        "B_up": [gene_ids[i] for i in perm[80:120]],
        "B_dn": [gene_ids[i] for i in perm[120:160]],
    }
    pos = {g: i for i, g in enumerate(gene_ids)}
    rows, cols = [], []
    for c, cell in enumerate(CELLS):
        for k in range(N_COMPOUNDS):
            moa = "A" if k < 4 else "B" if k < 8 else ""
            for dose in (1, 10):
                x = rng.normal(size=N_GENES)
                if moa:
                    x[[pos[g] for g in programs[f"{moa}_up"]]] += effect * (0.5 + 0.05 * k)
                    x[[pos[g] for g in programs[f"{moa}_dn"]]] -= effect * (0.5 + 0.05 * k)
                rows.append(x)
                cols.append(
                    {
                        "sig_id": f"CP_{cell}:BRD-{k:03d}:{dose}",
                        "pert_id": f"BRD-{k:03d}",
                        "pert_iname": f"compound{k}",
                        "pert_type": "trt_cp",
                        "cell_id": cell,
                        "pert_idose": f"{dose} uM",
                        "moa": {"A": "A inhibitor", "B": "B agonist"}.get(moa, "-666"),
                        "is_exemplar_sig": 1 if dose == 10 else 0,
                    }
                )
        for v in range(6):
            rows.append(rng.normal(size=N_GENES))
            cols.append(
                {
                    "sig_id": f"CTL_{cell}:DMSO:{v}",
                    "pert_id": "DMSO",
                    "pert_iname": "DMSO",
                    "pert_type": "ctl_vehicle",
                    "cell_id": cell,
                    "pert_idose": "-666",
                    "moa": "-666",
                    "is_exemplar_sig": 1 if v == 0 else 0,
                }
            )
    data = np.asarray(rows, dtype=np.float32).T
    info = pd.DataFrame(cols)
    col_meta = info.set_index("sig_id")
    gct = GCT(data, rids=gene_ids, cids=info["sig_id"], row_meta=genes, col_meta=col_meta)
    return gct, info, programs
