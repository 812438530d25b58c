"""Bounded result storage end to end: with ``--max-stored-results 2`` the oldest results expire
(410 Gone with a clear message) while the newest stay intact and every job stays listed."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")

_SERVER = runpy.run_path(str(Path(__file__).with_name("server.py")))
Server = _SERVER["Server"]


def test_oldest_results_expire_beyond_the_limit(test_store, programs, tmp_path):
    store, pcl, _ = test_store
    srv = Server(store, tmp_path / "jobs.sqlite", pcl, extra=["--max-stored-results", "2"])
    try:
        with httpx.Client(base_url=f"{srv.url}/api/v1", timeout=60) as c:
            ids, firsts = [], []
            for i, prog in enumerate("ABAB"):
                q = {"name": f"q{i}", "up": programs[f"{prog}_up"][:25], "down": programs[f"{prog}_dn"][:25]}
                r = c.post("/queries", json={"queries": [q]})
                assert r.status_code == 200, r.text
                ids.append(r.json()["job"]["id"])
                firsts.append(c.get(f"/jobs/{ids[-1]}/results", params={"level": "sig", "limit": 50}).json())
            for old in ids[:2]:
                job = c.get(f"/jobs/{old}").json()
                assert job["status"] == "expired" and "resubmit" in job["error"]
                for url in (f"/jobs/{old}/results", f"/jobs/{old}/downloads", f"/jobs/{old}/downloads/sig.tsv", f"/jobs/{old}/heatmap"):
                    r = c.get(url)
                    assert r.status_code == 410, (url, r.text)
                    err = r.json()["error"]
                    assert err["code"] == "expired" and old in err["message"] and "resubmit" in err["message"]
            for new, first in zip(ids[2:], firsts[2:], strict=True):
                assert c.get(f"/jobs/{new}").json()["status"] == "done"
                assert c.get(f"/jobs/{new}/results", params={"level": "sig", "limit": 50}).json() == first
                assert c.get(f"/jobs/{new}/downloads/sig.tsv").status_code == 200
            listed = c.get("/jobs", params={"limit": 500}).json()
            assert listed["total"] == 4 and {j["id"] for j in listed["items"]} == set(ids)
            expired = c.get("/jobs", params={"status": "expired"}).json()
            assert {j["id"] for j in expired["items"]} == set(ids[:2])
    finally:
        srv.stop()


def test_a_job_whose_row_was_deleted_answers_410_not_404(test_store, programs, tmp_path):
    """With ``--expired-row-hours 0`` an expired job's row goes at once; polling it answers 410
    Gone in the error format (a tombstone), while an id never seen answers 404."""
    store, pcl, _ = test_store
    srv = Server(store, tmp_path / "jobs.sqlite", pcl, extra=["--max-stored-results", "1", "--expired-row-hours", "0"])
    try:
        with httpx.Client(base_url=f"{srv.url}/api/v1", timeout=60) as c:
            ids = []
            for i, prog in enumerate("AB"):
                q = {"name": f"q{i}", "up": programs[f"{prog}_up"][:25], "down": programs[f"{prog}_dn"][:25]}
                r = c.post("/queries", json={"queries": [q]})
                assert r.status_code == 200, r.text
                ids.append(r.json()["job"]["id"])
            listed = c.get("/jobs", params={"limit": 500}).json()
            assert [j["id"] for j in listed["items"]] == ids[1:]  # the first row is deleted, not listed as expired
            for url in (f"/jobs/{ids[0]}", f"/jobs/{ids[0]}/results"):
                r = c.get(url)
                assert r.status_code == 410, (url, r.text)
                err = r.json()["error"]
                assert err["code"] == "expired" and ids[0] in err["message"] and "resubmit" in err["message"]
            r = c.get(f"/jobs/{'f' * 32}")
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
            assert c.get(f"/jobs/{ids[1]}").json()["status"] == "done"
    finally:
        srv.stop()
