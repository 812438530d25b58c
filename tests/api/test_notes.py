"""Issue 12 through the API (in-process): every query response says what it used (``notes``, the
same lines as the CLI's notes block, and ``describe``), PCL files are checked when the server
starts, and a PCL level without PCLs is a clear error."""

from __future__ import annotations

import time
import warnings

import pytest

from opencmap.api import Settings, create_app
from opencmap.core.genesets import GeneSet
from opencmap.errors import PCLError, PCLWarning
from opencmap.io import write_gmt
from opencmap.query.engine import run_query

with warnings.catch_warnings():  # starlette's TestClient warns about its httpx backend at import
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def _body(programs, *extra_up):
    return {"queries": [{"name": "A", "up": [*programs["A_up"][:20], *extra_up], "down": programs["A_dn"][:20]}]}


@pytest.fixture
def make_client(test_store, tmp_path):
    store, _, _ = test_store

    def make(pcl):
        settings = Settings(store_path=store, pcl_path=pcl, db_path=tmp_path / "jobs.sqlite")
        return TestClient(create_app(settings))

    return make


@pytest.fixture
def partial_pcl(tmp_path):
    path = tmp_path / "partial_pcl.gmt"
    write_gmt([GeneSet("PCL_A", "", ("BRD-000", "BRD-001", "BRD-002", "BRD-K00000001"))], path)
    return path


def test_sync_and_job_responses_carry_the_notes_of_the_result(make_client, partial_pcl, test_store, programs):
    store, _, _ = test_store
    body = _body(programs, "NOTAGENE7")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        c = make_client(partial_pcl).__enter__()
    try:
        r = c.post("/api/v1/queries", json=body)
        assert r.status_code == 200, r.text
        job = r.json()["job"]
        q = body["queries"][0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = run_query(store, q["up"], q["down"], name="A", pcl=partial_pcl)
        # the same lines as the CLI's notes block, every engine note verbatim among them
        assert job["notes"] == expected.report()
        assert any("NOTAGENE7" in line and "unknown" in line for line in job["notes"])
        assert expected.notes and all(n in job["notes"] for n in expected.notes)
        assert any("3 of the 4 member ids" in n and "BRD-K00000001" in n for n in job["notes"])
        # the structured data beside it
        assert job["describe"]["queries"][0]["unknown"] == ["NOTAGENE7"]
        assert job["describe"]["notes"] == expected.notes
        # the job, the results pages and the notes download say the same
        jid = job["id"]
        assert c.get(f"/api/v1/jobs/{jid}").json()["notes"] == job["notes"]
        page = c.get(f"/api/v1/jobs/{jid}/results", params={"level": "pcl_summary"}).json()
        assert page["notes"] == job["notes"] and [x["id"] for x in page["items"]] == ["PCL_A"]
        text = c.get(f"/api/v1/jobs/{jid}/downloads/notes.txt")
        assert text.status_code == 200 and text.text.splitlines() == job["notes"]
        assert c.get(f"/api/v1/jobs/{jid}/downloads/describe.json").json()["queries"][0]["name"] == "A"

        # a batch job: the same notes once done
        r = c.post("/api/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        batch = r.json()["id"]
        deadline = time.time() + 60
        while (status := c.get(f"/api/v1/jobs/{batch}").json())["status"] not in ("done", "failed"):
            assert time.time() < deadline
            time.sleep(0.1)
        assert status["status"] == "done" and status["notes"] == job["notes"]
    finally:
        c.__exit__(None, None, None)
    assert any(issubclass(w.category, PCLWarning) for w in seen)  # the partly known PCL file, at start-up


def test_server_refuses_a_pcl_file_with_no_known_member(make_client, tmp_path):
    bad = tmp_path / "names_pcl.gmt"
    write_gmt([GeneSet("HDAC", "", ("vorinostat", "BRD-K12345678"))], bad)
    with pytest.raises(PCLError, match=r"names_pcl\.gmt: none of its 2 member ids .*BRD-K12345678.*BRD-0"):
        with make_client(bad):
            pass


def test_pcl_level_without_pcls_is_a_clear_error(make_client, programs):
    with make_client(None) as c:
        r = c.post("/api/v1/queries", json=_body(programs))
        assert r.status_code == 200, r.text
        jid = r.json()["job"]["id"]
        r = c.get(f"/api/v1/jobs/{jid}/results", params={"level": "pcl_summary"})
        assert r.status_code == 404 and "PCL levels need perturbagen classes" in r.text
