"""Pipeline: a landmark -> gene model trained on the synthetic Level 3 recovers the BING genes.

The generator makes each inferred gene a noisy linear function of 8 landmarks, with a designed
R^2 of 0.6-0.95 for BING genes and 0.02-0.25 for the others; held-out correlations of
:func:`opencmap.pipeline.infer.train_inference` must separate the two.
"""

from __future__ import annotations

import pandas as pd
import pytest

from .ground_truth import ScienceData, inference_scores, summarise_inference

#: r_holdout threshold calling a gene "well inferred" (between the two designed R^2 ranges)
THRESHOLD = 0.7


@pytest.fixture(scope="module")
def inference_table(science_data: ScienceData) -> pd.DataFrame:
    return inference_scores(science_data)


def test_held_out_correlation_separates_bing_from_other_genes(inference_table: pd.DataFrame) -> None:
    s = summarise_inference(inference_table, threshold=THRESHOLD)
    print(f"\ninference recovery: {s}")
    assert s["n_bing"] >= 100 and s["n_other"] >= 30
    assert s["median_r_bing"] >= 0.85, s
    assert s["median_r_other"] <= 0.6, s
    assert s["auc"] >= 0.95, s
    assert s["accuracy"] >= 0.9, s


def test_held_out_quality_follows_the_designed_r2(inference_table: pd.DataFrame) -> None:
    s = summarise_inference(inference_table, threshold=THRESHOLD)
    assert s["spearman_r2_designed"] >= 0.6, s
