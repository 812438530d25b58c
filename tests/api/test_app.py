"""The REST API end to end against a real ``opencmap serve`` process: every route, errors,
results identical to the Python API, concurrency, persistence across restarts."""

from __future__ import annotations

import concurrent.futures
import io
import json
import re
import runpy
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")

_SERVER = runpy.run_path(str(Path(__file__).with_name("server.py")))
Server = _SERVER["Server"]


def _query(programs, name="A", n=30, prog="A"):
    return {"name": name, "up": programs[f"{prog}_up"][:n], "down": programs[f"{prog}_dn"][:n]}


@pytest.fixture(scope="module")
def sync_job(client, programs):
    r = client.post("/queries", json={"queries": [_query(programs)]})
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------------------------- server
def test_health_info_and_openapi(client, server):
    assert client.get("/health").json()["status"] == "ok"
    info = client.get("/info").json()
    assert info["store"]["n_signatures"] == 90
    assert info["default_space"] == "bing" and info["spaces"]["bing"] == 300
    assert "path" not in info["store"]  # no server paths revealed
    schema = client.get("/openapi.json").json()
    paths = set(schema["paths"])
    for p in ("/api/v1/queries", "/api/v1/jobs", "/api/v1/jobs/{job_id}/results", "/api/v1/genes/{gene}",
              "/api/v1/jobs/{job_id}/running-sum", "/api/v1/jobs/{job_id}/downloads/{name}"):  # fmt: skip
        assert p in paths
    ui = httpx.get(f"{server.url}/ui/")
    assert ui.status_code == 200 and "opencmap" in ui.text
    js = httpx.get(f"{server.url}/ui/vendor/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000


def test_cors_is_off_by_default(client):
    r = client.get("/info", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers


# ---------------------------------------------------------------------------------- metadata
def test_signatures_filter_page_and_detail(client):
    page = client.get("/signatures", params={"cell_id": "MCF7", "pert_type": "trt_cp", "limit": 5, "sort": "sig_id"}).json()
    assert page["total"] == 24 and len(page["items"]) == 5
    assert all(x["cell_id"] == "MCF7" for x in page["items"])
    ids = [x["sig_id"] for x in page["items"]]
    assert ids == sorted(ids, key=str.lower)
    page2 = client.get("/signatures", params={"cell_id": "MCF7", "pert_type": "trt_cp", "limit": 5, "offset": 5, "sort": "sig_id"}).json()
    assert not set(ids) & {x["sig_id"] for x in page2["items"]}
    one = client.get(f"/signatures/{ids[0]}").json()
    assert one["sig_id"] == ids[0]
    r = client.get("/signatures/NOPE")
    assert r.status_code == 404 and "NOPE" in r.json()["error"]["message"]
    assert client.get("/signatures", params={"sort": "no_such_col"}).status_code == 422


def test_perturbagens_cells_pcls(client):
    perts = client.get("/perturbagens", params={"limit": 100}).json()
    assert perts["total"] == 13
    brd0 = client.get("/perturbagens/BRD-000").json()
    assert brd0["n_cells"] == 3 and brd0["n_sigs"] == 6 and brd0["pcls"] == "PCL_A"
    assert len(brd0["signatures"]) == 6
    assert client.get("/perturbagens", params={"q": "compound1"}).json()["total"] == 3  # compound1, 10, 11
    assert client.get("/perturbagens/BRD-999").status_code == 404
    cells = client.get("/cells").json()
    assert [c["cell_id"] for c in cells["items"]] == ["A375", "MCF7", "PC3"]
    assert client.get("/cells/MCF7").json()["n_sigs"] == 30
    assert client.get("/cells/HELA").status_code == 404
    pcls = client.get("/pcls").json()
    assert {p["pcl"] for p in pcls["items"]} == {"PCL_A", "PCL_B"}
    assert client.get("/pcls/PCL_B").json()["members"] == ["BRD-004", "BRD-005", "BRD-006"]
    assert client.get("/pcls/PCL_Z").status_code == 404


def test_genes_lookup_with_suggestions(client):
    assert client.get("/genes/1012").json()["pr_gene_symbol"] == "GENE12"
    assert client.get("/genes/gene12").json()["pr_gene_id"] == "1012"  # symbols are case-insensitive
    assert client.get("/genes/gene12").json()["via"] == "store symbol, case changed"  # and the match is said
    r = client.get("/genes/GENE_12")  # a punctuation variant (issue 12: no similarity-based suggestions)
    assert r.status_code == 404
    assert "did you mean" in r.json()["error"]["message"] and "GENE12" in r.json()["error"]["message"]
    lm = client.get("/genes", params={"space": "lm", "limit": 1}).json()
    assert lm["total"] == 100
    assert client.get("/genes", params={"space": "nospace"}).status_code == 404


# ---------------------------------------------------------------------------------- queries
def test_sync_query_matches_python_api(client, sync_job, programs, test_store):
    from opencmap.query.engine import run_query

    store, pcl, _ = test_store
    q = _query(programs)
    expected = run_query(store, q["up"], q["down"], name="A", pcl=pcl)
    top = sync_job["top"]["pert_summary"]
    want = expected.top(20, level="pert_summary")
    assert [x["id"] for x in top] == want["id"].tolist()
    np.testing.assert_allclose([x["tau"] for x in top], want["tau"].to_numpy(), rtol=0, atol=1e-6)
    assert {x["id"] for x in top[:4]} == {"BRD-000", "BRD-001", "BRD-002", "BRD-003"}  # planted program A
    # the full signature level, every metric
    jid = sync_job["job"]["id"]
    page = client.get(f"/jobs/{jid}/results", params={"level": "sig", "limit": 1000, "sort": "sig_id", "order": "asc"}).json()
    got = {x["sig_id"]: x for x in page["items"]}
    frame = expected.to_frame("sig")
    for metric in ("wtcs", "ncs", "fdr_q", "tau", "es_up", "es_dn"):
        ref = dict(zip(frame["sig_id"], frame[metric], strict=True))
        np.testing.assert_allclose([got[s][metric] for s in ref], list(ref.values()), rtol=0, atol=1e-6)
    pcl_top = sync_job["top"]["pcl_summary"]
    assert pcl_top[0]["id"] == "PCL_A"


def test_job_reports_what_the_result_used(client, sync_job, programs, test_store):
    """notes and params (describe() of the result) are part of every job response."""
    from opencmap.query.engine import run_query

    store, pcl, _ = test_store
    q = _query(programs)
    expected = run_query(store, q["up"], q["down"], name="A", pcl=pcl).describe()
    job = sync_job["job"]
    assert job["params"] == expected["params"] and job["params"]["metric"] == "wtcs"
    # the job ran first and built the random-query FDR null; the later run found it cached
    cached = re.compile(r"; random-query nulls computed now \(and cached in the store\) for \d+ up / \d+ down$")
    assert [cached.sub("", n) for n in job["describe"]["notes"]] == [cached.sub("", n) for n in expected["notes"]]
    assert {cached.sub("", n) for n in expected["notes"]} <= {cached.sub("", n) for n in job["notes"]}  # every engine note
    assert client.get(f"/jobs/{job['id']}").json()["params"] == expected["params"]


def test_results_filter_sort_page(client, sync_job):
    jid = sync_job["job"]["id"]
    base = f"/jobs/{jid}/results"
    r = client.get(base, params={"level": "sig", "cell_id": "PC3", "sort": "ncs", "order": "asc", "limit": 10}).json()
    assert r["total"] == 30 and all(x["cell_id"] == "PC3" for x in r["items"])
    ncs = [x["ncs"] for x in r["items"]]
    assert ncs == sorted(ncs)
    r = client.get(base, params={"level": "sig", "order": "abs", "sort": "wtcs", "limit": 90}).json()
    mags = [abs(x["wtcs"]) for x in r["items"]]
    assert mags == sorted(mags, reverse=True)
    r = client.get(base, params={"level": "sig", "fdr_max": 0.1, "limit": 1000}).json()
    assert r["total"] > 0 and all(x["fdr_q"] <= 0.1 for x in r["items"])
    r = client.get(base, params={"level": "pert_summary", "q": "a inhibitor"}).json()
    assert r["total"] == 4
    assert client.get(base, params={"level": "bogus"}).status_code == 422
    assert client.get(base, params={"query": "nope"}).status_code == 404
    assert client.get(base, params={"limit": 0}).status_code == 422


def test_heatmap_and_running_sum(client, sync_job):
    jid = sync_job["job"]["id"]
    hm = client.get(f"/jobs/{jid}/heatmap", params={"n": 6}).json()
    assert hm["columns"] == ["A375", "MCF7", "PC3"] and len(hm["rows"]) == 6
    assert set(hm["rows"][:4]) <= {"BRD-000", "BRD-001", "BRD-002", "BRD-003", "DMSO"}
    assert len(hm["values"]) == 6 and all(len(v) == 3 for v in hm["values"])
    sig = client.get(f"/jobs/{jid}/results", params={"level": "sig", "limit": 1}).json()["items"][0]
    rs = client.get(f"/jobs/{jid}/running-sum", params={"sig_id": sig["sig_id"]}).json()
    up, dn = rs["curves"]["up"], rs["curves"]["down"]
    assert up["es"] == pytest.approx(sig["es_up"], abs=1e-6) and dn["es"] == pytest.approx(sig["es_dn"], abs=1e-6)
    assert max(up["y"], key=abs) == pytest.approx(up["es"], abs=1e-9)
    assert len(up["x"]) == 2 * len(up["hit_ranks"]) + 2 and up["x"][-1] == rs["n_features"] == 300
    assert client.get(f"/jobs/{jid}/running-sum", params={"sig_id": "NOPE"}).status_code == 404


def test_downloads_tsv_and_gctx(client, sync_job, tmp_path):
    from opencmap.io import read_gct, read_table

    jid = sync_job["job"]["id"]
    files = [f["name"] for f in client.get(f"/jobs/{jid}/downloads").json()["files"]]
    assert {"queries.tsv", "pert_summary.tsv", "sig_tau.gctx", "sig_ncs.gctx"} <= set(files)
    r = client.get(f"/jobs/{jid}/downloads/pert_summary.tsv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/tab-separated-values")
    (tmp_path / "p.tsv").write_bytes(r.content)
    table = read_table(tmp_path / "p.tsv")
    assert len(table) == 13 and "tau" in table.columns
    r = client.get(f"/jobs/{jid}/downloads/sig__ncs.gctx")
    (tmp_path / "s.gctx").write_bytes(r.content)
    gct = read_gct(tmp_path / "s.gctx")
    page = client.get(f"/jobs/{jid}/results", params={"level": "sig", "limit": 1000}).json()["items"]
    ref = {x["sig_id"]: x["ncs"] for x in page}
    np.testing.assert_allclose(gct.data[:, 0], [ref[s] for s in gct.rids], atol=1e-6)
    for bad in ("..%2F..%2Fetc%2Fpasswd", "../x.tsv", "sig__ncs.gctx.bak", "nolevel.tsv", "sig__nometric.gctx"):
        assert client.get(f"/jobs/{jid}/downloads/{bad}").status_code == 404, bad


def test_validation_reports_unknown_genes_with_suggestions(client, programs):
    q = _query(programs, n=12)
    q["up"] = q["up"] + ["GENE-5", "NOTAGENE"]  # issue 12: suggestions from the tables only
    rep = client.post("/queries/validate", json={"queries": [q]}).json()
    v = rep["queries"][0]
    assert v["valid"] and v["unknown"] == ["GENE-5", "NOTAGENE"] and "GENE5" in v["suggestions"]["GENE-5"]
    assert len(v["up"]) == 12
    small = {"name": "s", "up": programs["A_up"][:3], "down": []}
    rep = client.post("/queries/validate", json={"queries": [small]}).json()["queries"][0]
    assert not rep["valid"] and "need 10..150" in rep["message"] and len(rep["up"]) == 3


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"queries": []}, 422, "no queries"),
        ({"queries": [{"name": "e", "up": [], "down": []}]}, 422, "neither up nor down"),
        ({"queries": [{"name": "u", "up": ["NOPE1", "NOPE2"], "down": []}]}, 422, "Unknown"),
        ({"queries": [{"name": "bad/name", "up": ["1001"]}]}, 422, "name"),
        ({"queries": [{"name": "x", "up": ["1001"]}], "metric": "magic"}, 422, "metric"),
        ({"queries": [{"name": "x", "up": ["1001"]}], "extra": 1}, 422, "extra"),
        ({"sig_ids": ["NOT_A_SIG"]}, 404, "NOT_A_SIG"),
    ],
)
def test_bad_queries_give_clear_errors(client, body, status, needle):
    r = client.post("/queries", json=body)
    assert r.status_code == status, r.text
    assert needle.lower() in r.json()["error"]["message"].lower()


def test_malformed_and_oversized_payloads(client, programs):
    r = client.post("/queries", content=b'{"queries": [', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json"
    r = client.post("/queries", content=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422)
    huge = {"queries": [{"name": "h", "up": ["1001"] * 1_000_000}]}
    r = client.post("/queries", content=json.dumps(huge).encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
    many_genes = {"queries": [{"name": "m", "up": [str(i) for i in range(1001)]}]}
    r = client.post("/queries", json=many_genes)
    assert r.status_code == 422 and "limit of 1000" in r.json()["error"]["message"]
    two = {"queries": [_query(programs, "a"), _query(programs, "b")]}
    r = client.post("/queries", json=two)
    assert r.status_code == 422 and "POST /api/v1/jobs" in r.json()["error"]["message"]


def test_upload_gmt_and_grp(client):
    gmt = b"SETA_UP\tdesc\tGENE1\tGENE2\nSETA_DN\t\tGENE3\n"
    r = client.post("/genesets/parse", files={"file": ("q.gmt", gmt, "text/plain")})
    assert r.status_code == 200
    assert r.json()["sets"][0] == {"name": "SETA_UP", "description": "desc", "genes": ["GENE1", "GENE2"]}
    r = client.post("/genesets/parse", files={"file": ("up.grp", b"# comment\nGENE1\nGENE2\n", "text/plain")})
    assert r.json() == {"format": "grp", "sets": [{"name": "up", "description": "", "genes": ["GENE1", "GENE2"]}]}
    r = client.post("/genesets/parse", files={"file": ("x.exe", b"MZ", "application/octet-stream")})
    assert r.status_code == 422
    r = client.post("/genesets/parse", files={"file": ("bad.gmt", b"ONLYNAME\n", "text/plain")})
    assert r.status_code == 422 and "bad.gmt" in r.json()["error"]["message"]


def test_upload_queries_pairs_up_and_down_files_as_the_cli(client, tmp_path):
    """An up GMT in ``up`` and a down GMT in ``down`` stay on their sides, paired by name as
    ``queries_from_files`` (the CLI) pairs them; what cannot be paired is refused."""
    from opencmap.query.genesets import queries_from_files

    up = b"A_UP\t\tG1\tG2\nB_UP\t\tG3\n"
    dn = b"B_DN\t\tG4\tG5\nA_DN\t\tG6\n"
    r = client.post("/genesets/queries", files={"up": ("up.gmt", up), "down": ("dn.gmt", dn)})
    assert r.status_code == 200, r.text
    body = r.json()
    (tmp_path / "up.gmt").write_bytes(up)
    (tmp_path / "dn.gmt").write_bytes(dn)
    cli = [{"name": q.name, "up": list(q.up), "down": list(q.down)} for q in queries_from_files(tmp_path / "up.gmt", tmp_path / "dn.gmt")]
    assert body["queries"] == cli == [{"name": "A", "up": ["G1", "G2"], "down": ["G6"]}, {"name": "B", "up": ["G3"], "down": ["G4", "G5"]}]
    assert body["format"] == "gmt" and body["files"] == {"up": "up.gmt", "down": "dn.gmt"}
    # identical names in both files (CMap's query files without suffixes) pair too; a down file alone is down sets
    r = client.post("/genesets/queries", files={"up": ("u.gmt", b"X\t\tG1\n"), "down": ("d.gmt", b"X\t\tG2\n")})
    assert r.json()["queries"] == [{"name": "X", "up": ["G1"], "down": ["G2"]}]
    r = client.post("/genesets/queries", files={"down": ("d.gmt", b"X\t\tG2\n")})
    assert r.json()["queries"] == [{"name": "X", "up": [], "down": ["G2"]}]
    # GRP files: one query, named by the form
    r = client.post("/genesets/queries", files={"up": ("u.grp", b"G1\nG2\n"), "down": ("d.txt", b"G3\n")}, data={"name": "mine"})
    assert r.json()["queries"] == [{"name": "mine", "up": ["G1", "G2"], "down": ["G3"]}] and r.json()["format"] == "grp"
    # file names with folders or odd characters never reach the server's disk as given
    r = client.post("/genesets/queries", files={"up": ("../../x\u00e9 y.gmt", b"A_UP\t\tG1\n"), "down": ("C:\\tmp\\d.gmt", b"A_DN\t\tG2\n")})
    assert r.status_code == 200, r.text
    assert r.json()["files"] == {"up": "x_ y.gmt", "down": "d.gmt"}
    # set names that are no valid query name are renamed, with a note
    r = client.post("/genesets/queries", files={"up": ("u.gmt", b"P53 (v7)_UP\t\tG1\n")})
    assert r.json()["queries"][0]["name"] == "P53 _v7_" and "renamed" in r.json()["notes"][0]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"up": ("up.gmt", b"A_UP\t\tG1\n"), "down": ("dn.gmt", b"B_DN\t\tG2\n")}, "have no down partner: A_UP"),
        ({"up": ("dn.gmt", b"A_DN\t\tG1\n"), "down": ("up.gmt", b"A_UP\t\tG2\n")}, "up file 'dn.gmt': set 'A_DN' is named as a down set"),
        ({"up": ("both.gmt", b"A_UP\t\tG1\nA_DN\t\tG2\n")}, "both name query 'A'"),
        ({"up": ("empty.gmt", b"\n")}, "up file 'empty.gmt' has no gene sets"),
        ({"down": ("empty.grp", b"# nothing\n")}, "down file 'empty.grp' has no genes"),
        ({"up": ("up.gmt", b"A\t\tG1\n"), "down": ("dn.grp", b"G2\n")}, "both .gmt or both .grp"),
        ({"up": ("up.xls", b"A")}, "expected a .gmt, .grp or .txt file"),
        ({}, "upload an up file and/or a down file"),
    ],
)
def test_upload_queries_refuses_what_it_cannot_pair(client, files, message):
    r = client.post("/genesets/queries", files=files or None, data={} if files else {"name": "x"})
    assert r.status_code == 422, r.text
    text = r.json()["error"]["message"]
    assert message in text and "opencmap-upload" not in text  # names the uploaded file, not the server's temp path


# ---------------------------------------------------------------------------------- jobs
def test_jobs_404_and_bad_ids(client):
    assert client.get("/jobs/" + "0" * 32).status_code == 404
    assert client.get("/jobs/not-an-id").status_code == 422
    assert client.get("/jobs", params={"status": "weird"}).status_code == 422


def test_twenty_concurrent_submissions_complete_correctly(client, programs, server, test_store):
    from opencmap.query.engine import run_query

    store, pcl, _ = test_store
    bodies = []
    for i in range(20):
        prog = "A" if i % 2 == 0 else "B"
        n = 15 + i % 5
        bodies.append({"queries": [_query(programs, f"job{i}", n=n, prog=prog), _query(programs, f"rev{i}", n=n, prog=prog)]})
        bodies[-1]["queries"][1]["up"], bodies[-1]["queries"][1]["down"] = bodies[-1]["queries"][1]["down"], bodies[-1]["queries"][1]["up"]

    def submit(body):
        with httpx.Client(base_url=f"{server.url}/api/v1", timeout=60) as c:
            r = c.post("/jobs", json=body)
            assert r.status_code == 202, r.text
            return r.json()["id"]

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        ids = list(pool.map(submit, bodies))
    assert len(set(ids)) == 20
    import time

    deadline = time.monotonic() + 120
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        for jid in list(pending):
            if client.get(f"/jobs/{jid}").json()["status"] in ("done", "failed"):
                pending.discard(jid)
        time.sleep(0.3)
    assert not pending
    for jid, body in zip(ids, bodies, strict=True):
        job = client.get(f"/jobs/{jid}").json()
        assert job["status"] == "done", job["error"]
        assert job["progress"] == 1 and [q["name"] for q in job["queries"]] == [q["name"] for q in body["queries"]]
    # spot-check three jobs against the Python API
    for k in (0, 7, 19):
        body = bodies[k]
        for q in body["queries"]:
            ref = run_query(store, q["up"], q["down"], name=q["name"], pcl=pcl).top(13, level="pert_summary")
            got = client.get(f"/jobs/{ids[k]}/results", params={"query": q["name"], "limit": 13}).json()["items"]
            assert [x["id"] for x in got] == ref["id"].tolist()
            np.testing.assert_allclose([x["tau"] for x in got], ref["tau"].to_numpy(), atol=1e-6)
    history = client.get("/jobs", params={"limit": 500}).json()
    assert set(ids) <= {j["id"] for j in history["items"]}


def test_jobs_persist_across_restart_and_interrupted_jobs_rerun(test_store, programs, tmp_path):
    """A finished job survives a restart; a job left 'running' by a crashed server is re-run;
    one interrupted too often is reported as failed. Also: the API token is enforced."""
    from opencmap.api.jobs import JobDB

    store, pcl, _ = test_store
    db = tmp_path / "jobs.sqlite"
    srv = Server(store, db, pcl, token="s3cret")
    try:
        auth = {"Authorization": "Bearer s3cret"}
        with httpx.Client(base_url=f"{srv.url}/api/v1", timeout=60) as c:
            assert c.get("/info").status_code == 401
            assert c.get("/info", headers={"X-API-Token": "wrong"}).status_code == 401
            assert c.get("/health").status_code == 200
            r = c.post("/queries", json={"queries": [_query(programs)]}, headers=auth)
            assert r.status_code == 200
            job_id = r.json()["job"]["id"]
            before = c.get(f"/jobs/{job_id}/results", params={"level": "sig", "limit": 1000}, headers=auth).json()
    finally:
        srv.stop()
    # simulate a crash mid-job: rows left 'running' by a dead server
    jobs = JobDB(db)
    request = {"queries": [_query(programs, "orphan")], "metric": "wtcs"}
    orphan = jobs.create(request, n_queries=1, mode="batch", status="running")
    jobs.set_status(orphan, "running", attempts=1)
    hopeless = jobs.create(request, n_queries=1, mode="batch", status="running")
    jobs.set_status(hopeless, "running", attempts=9)
    jobs.close()
    srv = Server(store, db, pcl, token="s3cret")
    try:
        with httpx.Client(base_url=f"{srv.url}/api/v1", timeout=60, headers={"Authorization": "Bearer s3cret"}) as c:
            after = c.get(f"/jobs/{job_id}/results", params={"level": "sig", "limit": 1000}).json()
            assert after == before
            import time

            deadline = time.monotonic() + 60
            while c.get(f"/jobs/{orphan}").json()["status"] != "done" and time.monotonic() < deadline:
                time.sleep(0.2)
            assert c.get(f"/jobs/{orphan}").json()["attempts"] == 2
            top = c.get(f"/jobs/{orphan}/results", params={"limit": 4}).json()["items"]
            assert {x["id"] for x in top} == {"BRD-000", "BRD-001", "BRD-002", "BRD-003"}
            failed = c.get(f"/jobs/{hopeless}").json()
            assert failed["status"] == "failed" and "resubmit" in failed["error"]
    finally:
        srv.stop()


def test_openapi_job_status_enums_are_the_job_states(client):
    from opencmap.api.jobs import JOB_STATES

    schema = client.get("/openapi.json").json()
    assert schema["components"]["schemas"]["JobStatus"]["properties"]["status"]["enum"] == list(JOB_STATES)
    (param,) = [p for p in schema["paths"]["/api/v1/jobs"]["get"]["parameters"] if p["name"] == "status"]
    assert param["schema"]["anyOf"][0]["enum"] == list(JOB_STATES)
    assert client.get("/jobs", params={"status": "nonsense"}).status_code == 422
