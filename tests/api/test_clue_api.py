"""The CLUE-compatible API (/api/perts, /api/jobs, ...) on a real server."""

from __future__ import annotations

import io
import json
import runpy
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
Server = runpy.run_path(str(Path(__file__).with_name("server.py")))["Server"]


@pytest.fixture(scope="module")
def clue(server):
    with httpx.Client(base_url=f"{server.url}/api", timeout=60.0, headers={"user_key": "anything"}) as c:
        yield c


@pytest.fixture(scope="module")
def store(test_store):
    from opencmap.query.store import open_store

    return open_store(test_store[0])


def get(client, resource, flt):
    r = client.get(f"/{resource}", params={"filter": json.dumps(flt)})
    assert r.status_code == 200, r.text
    return r.json()


def test_perts_filter_and_fields(clue):
    out = get(clue, "perts", {"where": {"pert_id": {"inq": ["BRD-000", "BRD-001", "NOPE"]}}, "fields": {"pert_id": True, "pert_iname": True}})
    assert sorted(out, key=lambda r: r["pert_id"]) == [{"pert_id": "BRD-000", "pert_iname": "compound0"}, {"pert_id": "BRD-001", "pert_iname": "compound1"}]
    r = clue.get("/perts", params={"filter": json.dumps({"where": {"pert_id": "BRD-000"}, "fields": ["pert_id", "pubchem_cid"]})})
    assert r.json() == [{"pert_id": "BRD-000"}] and r.headers["X-OpenCMap-Unknown-Fields"] == "pubchem_cid"
    full = get(clue, "perts", {"where": {"pert_id": "BRD-000"}})[0]
    assert full["id"] == "BRD-000"
    assert full["pcl_membership"] == ["PCL_A"] and sorted(full["cell_id"]) == ["A375", "MCF7", "PC3"] and full["num_sig"] == 6


def test_counts_match_the_store(clue, store):
    info = store.sig_info
    r = clue.get("/sigs/count", params={"where": json.dumps({"cell_id": "A375"})})
    assert r.json() == {"count": int((info["cell_id"] == "A375").sum())}
    r = clue.get("/sigs/count", params={"where": json.dumps({"and": [{"cell_id": "MCF7"}, {"pert_type": {"neq": "trt_cp"}}]})})
    assert r.json()["count"] == int(((info["cell_id"] == "MCF7") & (info["pert_type"] != "trt_cp")).sum())
    assert clue.get("/cells/count", params={"where": json.dumps({"cell_id": "A375"})}).json() == {"count": 1}
    assert clue.get("/perts/count").json() == {"count": int(info["pert_id"].nunique())}


def test_genes_sigs_cells_pcls(clue, store):
    gene = get(clue, "genes", {"where": {"entrez_id": 1000}})
    assert len(gene) == 1 and gene[0]["gene_symbol"] == "GENE0" and gene[0]["l1000_type"] == "landmark"
    two = get(clue, "genes", {"where": {"entrez_id": {"inq": [1000, 1150]}}, "fields": {"gene_symbol": True}})
    assert sorted(g["gene_symbol"] for g in two) == ["GENE0", "GENE150"]
    assert get(clue, "genes", {"where": {"entrez_id": 1350}})[0]["l1000_type"] == "inferred"
    sigs = get(clue, "sigs", {"where": {"pert_id": "BRD-003", "cell_id": "PC3"}, "order": "sig_id DESC", "fields": ["sig_id"]})
    expected = sorted(store.sig_info.query("pert_id == 'BRD-003' and cell_id == 'PC3'")["sig_id"], reverse=True)
    assert [s["sig_id"] for s in sigs] == expected
    assert [c["cell_id"] for c in get(clue, "cells", {"order": "cell_id ASC"})] == ["A375", "MCF7", "PC3"]
    pcl = get(clue, "pcls", {"where": {"group_id": "PCL_B"}})[0]
    assert pcl["members"] == ["BRD-004", "BRD-005", "BRD-006"] and pcl["type"] == "PCL"
    page = get(clue, "sigs", {"limit": 5, "skip": 5, "order": "sig_id ASC", "fields": {"sig_id": True}})
    assert [s["sig_id"] for s in page] == sorted(store.sig_info["sig_id"])[5:10]


def test_unsupported_operator_is_400(clue):
    r = clue.get("/perts", params={"filter": json.dumps({"where": {"pert_id": {"nearSphere": "x"}}})})
    assert r.status_code == 400
    msg = r.json()["error"]["message"]
    assert "'nearSphere'" in msg and "inq" in msg and "regexp" in msg
    assert r.json()["error"]["statusCode"] == 400
    r = clue.get("/genes/count", params={"where": json.dumps({"symbol": "TP53"})})
    assert r.status_code == 400 and "no field 'symbol'" in r.json()["error"]["message"]


def _wait(clue, job_id, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = clue.get(f"/jobs/findByJobId/{job_id}").json()
        if status["status"] in ("completed", "failed"):
            return status
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {status}")


def test_job_submit_poll_archive(clue, programs, store, test_store):
    from opencmap.io import read_gct
    from opencmap.query.engine import run_query

    up, dn = programs["A_up"][:30], programs["A_dn"][:30]
    form = {
        "tool_id": "sig_gutc_tool", "name": "my_analysis", "data_type": "L1000", "dataset": "Touchstone",
        "uptag-cmapfile": "TAG\t\t" + "\t".join(up + ["NOT_A_GENE"]), "dntag-cmapfile": "TAG\t\t" + "\t".join(dn),
    }  # fmt: skip
    r = clue.post("/jobs", data=form)  # form-encoded, as cmapPy's run_post sends it
    assert r.status_code == 200, r.text
    body = r.json()
    job_id = body["result"]["job_id"]
    assert body["result"]["tool_id"] == "sig_gutc_tool" and body["result"]["status"] in ("pending", "running", "completed")
    assert any("NOT_A_GENE" in w for w in body["warnings"]) and any("Touchstone" in w for w in body["warnings"])
    status = _wait(clue, job_id)
    assert status["status"] == "completed" and status["download_status"] == "completed" and status["errorMessage"] == ""
    assert status["download_url"].startswith("//127.0.0.1:") and status["download_url"].endswith(f"/api/jobs/{job_id}/result.tar.gz")
    archive = clue.get(f"http:{status['download_url']}")
    assert archive.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tf:
        names = set(tf.getnames())
        root = f"my_analysis.sig_gutc_tool.{job_id}"
        for f in ("ns_pert_summary", "ps_pert_summary", "ps_pcl_summary", "ns_sig", "cs_sig", "ps_sig", "ns_pcl_cell"):
            assert f"{root}/matrices/gutc/{f}.gctx" in names, f
        assert f"{root}/matrices/query/up.gmt" in names and f"{root}/query_info.txt" in names
        tf.extractall(test_store[0].parent / "clue-archive", filter="data")
    got = read_gct(test_store[0].parent / "clue-archive" / root / "matrices" / "gutc" / "ns_pert_summary.gctx")
    native = run_query(store, up=up + ["NOT_A_GENE"], down=dn, pcl=test_store[1], name="TAG")
    expected = native.matrix("ncs", level="pert_summary")
    assert list(got.cids) == ["TAG"]
    np.testing.assert_array_equal(got.data, expected.data)
    assert list(got.rids) == list(expected.rids)


def test_job_multipart_upload_and_errors(clue, programs):
    up, dn = programs["B_up"][:20], programs["B_dn"][:20]
    files = {"uptag-cmapfile": ("up.gmt", "Q1\tdesc\t" + "\t".join(up) + "\n"), "dntag-cmapfile": ("dn.gmt", "Q1\tdesc\t" + "\t".join(dn) + "\n")}
    r = clue.post("/jobs", data={"tool_id": "sig_queryl1k_tool", "name": "up"}, files=files)
    assert r.status_code == 200, r.text
    assert _wait(clue, r.json()["result"]["job_id"])["status"] == "completed"
    as_json = clue.post("/jobs", json={"tool_id": "sig_fastgutc_tool", "name": "json_job", "ignoreWarnings": True, "data_type": "L1000",
                                       "uptag-cmapfile": "Q2\t\t" + "\t".join(up), "dntag-cmapfile": "Q2\t\t" + "\t".join(dn)})
    assert as_json.status_code == 200, as_json.text
    done = _wait(clue, as_json.json()["result"]["job_id"])
    assert done["status"] == "completed" and done["params"]["ignoreWarnings"] is True and done["queries"] == ["Q2"]
    r = clue.post("/jobs", json={"tool_id": "sig_fancy_tool", "uptag-cmapfile": "T\t\t1"})
    assert r.status_code == 400 and "sig_gutc_tool" in r.json()["error"]["message"]
    assert clue.get("/jobs/findByJobId/" + "0" * 32).status_code == 404
    small = clue.post("/jobs", data={"tool_id": "sig_gutc_tool", "uptag-cmapfile": "T\t\t" + "\t".join(up[:3])})
    assert small.status_code == 400 and "3 up genes" in small.json()["error"]["message"]


def test_wrong_user_key_is_401(test_store, tmp_path_factory):
    store, pcl, _ = test_store
    srv = Server(store, tmp_path_factory.mktemp("clue-token") / "jobs.sqlite", pcl, token="s3cret")
    try:
        base = f"{srv.url}/api"
        assert httpx.get(f"{base}/perts/count", headers={"user_key": "s3cret"}).json()["count"] > 0
        assert httpx.get(f"{base}/perts/count", params={"user_key": "s3cret"}).status_code == 200
        wrong = httpx.get(f"{base}/perts/count", headers={"user_key": "guess"})
        assert wrong.status_code == 401 and "wrong user_key" in wrong.json()["error"]["message"]
        assert httpx.get(f"{base}/perts").status_code == 401
        assert httpx.post(f"{base}/jobs", headers={"user_key": "guess"}, data={"tool_id": "sig_gutc_tool"}).status_code == 401
    finally:
        srv.stop()
