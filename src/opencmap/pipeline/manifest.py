"""The run manifest (``manifest.json``): what a run used and produced.

Inputs (fingerprints), every parameter of every step (:meth:`PipelineParams.to_dict`, the nested
Level 1 → 3 step parameters included), the replicate grouping, the output files, counts,
software versions and the run time. Written atomically, last, by
:meth:`opencmap.pipeline.run.PipelineRun.finish`.
"""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opencmap import __version__
from opencmap.io.atomic import atomic_write_path
from opencmap.pipeline.params import PipelineParams
from opencmap.pipeline.plan import fingerprint

__all__ = ["MANIFEST_VERSION", "MANIFEST_NAME", "write_manifest", "versions"]

#: Format version of ``manifest.json``.
MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"


def versions() -> dict[str, str]:
    """Versions of opencmap, Python and the numeric libraries."""
    import h5py
    import scipy

    return {
        "opencmap": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "h5py": h5py.__version__,
    }


def write_manifest(
    out: Path,
    *,
    params: PipelineParams,
    matrix: Path,
    inst_info: str | PathLike[str] | pd.DataFrame | None,
    gene_info: str | PathLike[str] | pd.DataFrame | None,
    inference_model: str | PathLike[str] | None,
    level1: dict[str, Any] | None,
    outputs: dict[str, Any],
    counts: dict[str, Any],
    seconds: float,
) -> Path:
    """Write ``out/manifest.json``; returns its path."""
    if isinstance(inst_info, (str, PathLike)):
        inst: Any = fingerprint(Path(inst_info))
    else:
        inst = "DataFrame" if isinstance(inst_info, pd.DataFrame) else None
    manifest = {
        "format_version": MANIFEST_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": versions(),
        "inputs": {
            "matrix": fingerprint(matrix),
            "inst_info": inst,
            "gene_info": str(gene_info) if isinstance(gene_info, (str, PathLike)) else None,
            "inference_model": fingerprint(Path(inference_model)) if inference_model is not None else None,
            **({"level1": level1} if level1 is not None else {}),
        },
        "params": params.to_dict(),
        "replicate_grouping": {
            "replicate_set": f"rna_plate matched by {params.replicate_set_pattern!r}",
            "group_by": list(params.group_by),
        },
        "outputs": outputs,
        "counts": counts,
        "seconds": round(seconds, 3),
    }
    path = out / MANIFEST_NAME
    with atomic_write_path(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return path
