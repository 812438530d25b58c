"""``opencmap demo`` on the tiny compendium: every stage runs, the planted MOA comes first."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from opencmap.cli import cli


@pytest.mark.slow
def test_demo_tiny_end_to_end_and_cached(tmp_path):
    from opencmap.demo import run_demo

    work = tmp_path / "demo"
    res = CliRunner().invoke(cli, ["demo", str(work), "--size", "tiny", "--moa", "EGFR inhibitor", "--top", "5"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "Top perturbagens" in res.stdout and "CP_EGFR_INHIBITOR" in res.stdout
    assert (work / "results" / "pert_summary.tsv").exists()
    again = run_demo(work, size="tiny", moa="EGFR inhibitor", top=5)  # cached stages: query only
    assert again.top_pcls["pcl"].iloc[0] == "CP_EGFR_INHIBITOR"
    assert again.hits_in_top >= 2
    assert set(again.top_perturbagens["pert_id"].iloc[:2]) <= set(again.moa_members)
    bad = CliRunner().invoke(cli, ["demo", str(work), "--size", "tiny", "--moa", "No such MOA"])
    assert bad.exit_code != 0
