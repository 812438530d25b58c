"""Calibration of the FDR methods on the synthetic compendium's planted mechanisms.

Queries: the up/down 50 landmarks of each planted gene program that drives active compounds
(``MOA:...``/``TARGET:...``, as ``opencmap demo`` builds its query), and of programs planted in no
perturbagen (``NULL:<i>``, a complete null). Every store signature is classified from the
generator's ground truth for each query program ``T``:

* **true** -- its perturbagen acts through ``T`` (a compound's primary or dual program, a hairpin
  against / cDNA of the target, the CGS of the target; either sign) in a cell line where ``T`` acts;
* **zero-effect** -- its noise-free signature is 0 (controls, inactive compounds, compounds in cell
  lines where none of their programs act);
* **unrelated** -- any other (a real effect through other programs).

For each FDR method, at q < 0.05 over the planted queries: the false-discovery proportion
(FDP = false / discoveries, mean over queries and pooled over all queries) with false = zero-effect
+ unrelated ("strict"), and with false = zero-effect only (a lower bound, unrelated signatures
left out of numerator and denominator); power = true discovered / true. For the complete-null
queries every discovery is false: FWER (= FDR under the complete null) is the fraction of those
queries with any discovery. A calibrated method has FDP <= ~0.05.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_fdr_calibration.py                 # science size, ~1-2 min
    PYTHONPATH=src .venv/bin/python benchmarks/bench_fdr_calibration.py --size tiny
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

GROUND_TRUTH = Path(__file__).resolve().parents[1] / "tests" / "science" / "ground_truth.py"


def _load_ground_truth():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("opencmap_science_ground_truth", GROUND_TRUTH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="science", help="compendium size: science (default, the tests'), tiny or demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="cache folder (default: <tmp>/opencmap-fdr-<size>-<seed>)")
    parser.add_argument("--null-queries", type=int, default=10, help="queries of programs planted in no perturbagen")
    parser.add_argument("--n-random", type=int, default=1000, help="random queries per size (random-query methods)")
    args = parser.parse_args(argv)
    gt = _load_ground_truth()
    size = gt.SCIENCE_SPEC if args.size == "science" else args.size
    work = args.workdir or Path(tempfile.gettempdir()) / f"opencmap-fdr-{args.size}-{args.seed}"
    start = time.perf_counter()
    data = gt.prepare(work, size, seed=args.seed)
    print(f"compendium {args.size} (seed {args.seed}) in {work}: {data.store.n_signatures:,} signatures, "
          f"{int(gt_null(data))} null signatures [{time.perf_counter() - start:.1f} s]")  # fmt: skip
    table = gt.fdr_calibration(data, n_null_queries=args.null_queries, n_random=args.n_random)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.round(3).to_string(index=False))


def gt_null(data: Any) -> int:
    from opencmap.query.engine import null_mask

    return int(null_mask(data.sig_info).sum())


if __name__ == "__main__":
    main()
