"""Issue 12 item 2 through the REST API: a request with only ``up`` genes is scored on the up
tail (cmapM es_tail=up), says so in ``notes`` and per query, and gets no tau from the test
store's two-sided background."""

from __future__ import annotations

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")


def test_request_with_only_up_is_noted_and_scored_on_the_up_tail(client, programs, test_store):
    from opencmap.query.engine import run_query

    body = {"queries": [{"name": "U", "up": programs["A_up"][:30]}]}
    r = client.post("/queries", json=body)
    assert r.status_code == 200, r.text
    job = r.json()["job"]
    assert any("up tail only" in n and "ES_up" in n for n in job["notes"])
    assert any("--tail up" in n for n in job["notes"])  # no up-only background in the test store
    q = job["queries"][0]
    assert q["tail"] == "up" and q["provenance"]["tail"] == "up"
    assert q["provenance"]["tau"]["available"] is False and q["provenance"]["tau"]["matches_query"] is False
    page = client.get(f"/jobs/{job['id']}/results", params={"level": "sig", "limit": 1000, "sort": "sig_id", "order": "asc"}).json()
    assert "tau" not in page["metrics"]
    store, pcl, _ = test_store
    with pytest.warns(Warning):
        expected = run_query(store, up=programs["A_up"][:30], name="U", pcl=pcl)
    frame = expected.to_frame("sig")
    got = {x["sig_id"]: x["wtcs"] for x in page["items"]}
    np.testing.assert_allclose([got[s] for s in frame["sig_id"]], frame["wtcs"].to_numpy(float), rtol=0, atol=1e-6)
    np.testing.assert_allclose(frame["wtcs"].to_numpy(float), frame["es_up"].to_numpy(float), rtol=0, atol=1e-7)
