"""The API's ``fdr_method`` request field and the job's FDR record (issue 12, item 3)."""

from __future__ import annotations


def _query(programs, n=30):
    return {"name": "A", "up": programs["A_up"][:n], "down": programs["A_dn"][:n]}


def test_fdr_method_in_request_and_job(client, programs):
    r = client.post("/queries", json={"queries": [_query(programs)], "fdr_method": "cmap"})
    assert r.status_code == 200, r.text
    job = r.json()["job"]
    assert job["params"]["fdr_method"] == "cmap" and job["fdr"]["method"] == "cmap"
    sides = job["fdr"]["queries"]["A"]
    assert {"positive", "negative"} == set(sides) and all("n_null" in s for s in sides.values())
    assert any("cmap method" in n for n in job["notes"])

    r = client.post("/queries", json={"queries": [_query(programs)], "fdr_null_size": 100, "fdr_seed": 1})
    assert r.status_code == 200, r.text
    job = r.json()["job"]
    assert job["params"]["fdr_method"] == "random_query_pooled" and job["params"]["fdr_null_size"] == 100
    assert job["fdr"]["queries"]["A"]["n_random"] == 100


def test_bad_fdr_method_is_refused(client, programs):
    r = client.post("/queries", json={"queries": [_query(programs)], "fdr_method": "storey"})
    assert r.status_code == 422
