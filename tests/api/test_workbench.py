"""Routes of the web workbench (issue 17): control filter, heatmap following the table, an item's
scores, member names, download-all, GMT/GRP export, job delete/cancel, offline docs, HTML error pages."""

from __future__ import annotations

import io
import time
import zipfile

import pytest

httpx = pytest.importorskip("httpx")


def _query(programs, name="A", n=30, prog="A"):
    return {"name": name, "up": programs[f"{prog}_up"][:n], "down": programs[f"{prog}_dn"][:n]}


@pytest.fixture(scope="module")
def job(client, programs):
    r = client.post("/queries", json={"queries": [_query(programs)]})
    assert r.status_code == 200, r.text
    return r.json()["job"]["id"]


def test_controls_filter_and_pert_types(client, job):
    info = client.get("/info").json()
    assert info["pert_types"] == {"trt_cp": 12, "ctl_vehicle": 1}
    base = f"/jobs/{job}/results"
    all_rows = client.get(base, params={"level": "pert_summary", "limit": 100}).json()
    no_ctl = client.get(base, params={"level": "pert_summary", "limit": 100, "controls": "false"}).json()
    assert all_rows["total"] == 13 and no_ctl["total"] == 12
    assert "DMSO" not in {r["id"] for r in no_ctl["items"]}
    sigs = client.get(base, params={"level": "sig", "controls": "false", "limit": 1000}).json()
    assert sigs["total"] == 72 and all(not r["pert_type"].startswith("ctl") for r in sigs["items"])


def test_pcl_rows_name_their_members(client, job):
    rows = client.get(f"/jobs/{job}/results", params={"level": "pcl_summary"}).json()["items"]
    a = next(r for r in rows if r["id"] == "PCL_A")
    assert a["members"] == "BRD-000|BRD-001|BRD-002|BRD-003"
    assert a["member_names"] == "compound0|compound1|compound2|compound3"


def test_heatmap_follows_the_table(client, job):
    params = {"n": 5, "sort": "tau", "order": "asc", "controls": "false"}
    hm = client.get(f"/jobs/{job}/heatmap", params=params).json()
    table = client.get(f"/jobs/{job}/results", params={"level": "pert_summary", "limit": 5, **params}).json()
    assert hm["rows"] == [r["id"] for r in table["items"]]
    assert hm["row_labels"][0] == f"{table['items'][0]['pert_iname']} (trt_cp)"
    filt = client.get(f"/jobs/{job}/heatmap", params={"q": "compound1", "n": 30}).json()
    assert set(filt["rows"]) == {"BRD-001", "BRD-010", "BRD-011"}
    pcl = client.get(f"/jobs/{job}/heatmap", params={"kind": "pcl"}).json()
    assert set(pcl["rows"]) == {"PCL_A", "PCL_B"} and pcl["columns"] == ["A375", "MCF7", "PC3"]
    summary = {r["id"]: r["tau"] for r in client.get(f"/jobs/{job}/results", params={"level": "pcl_cell", "limit": 100}).json()["items"]}
    i, j = pcl["rows"].index("PCL_A"), pcl["columns"].index("MCF7")
    assert pcl["values"][i][j] == pytest.approx(summary["PCL_A:MCF7"])


def test_scores_of_an_item(client, job):
    pert = client.get(f"/jobs/{job}/scores", params={"kind": "pert", "id": "BRD-002"}).json()
    assert len(pert["sig"]) == 6 and {r["cell_id"] for r in pert["pert_cell"]} == {"A375", "MCF7", "PC3"}
    assert len(pert["pert_summary"]) == 1 and pert["pert_summary"][0]["id"] == "BRD-002"
    table = client.get(f"/jobs/{job}/results", params={"level": "sig", "q": "CP_MCF7:BRD-002:10"}).json()["items"][0]
    sig = client.get(f"/jobs/{job}/scores", params={"kind": "sig", "id": "CP_MCF7:BRD-002:10"}).json()["sig"][0]
    assert sig["tau"] == pytest.approx(table["tau"]) and sig["ncs"] == pytest.approx(table["ncs"])
    pcl = client.get(f"/jobs/{job}/scores", params={"kind": "pcl", "id": "PCL_B"}).json()
    assert len(pcl["pcl_cell"]) == 3 and pcl["pcl_summary"][0]["n_members"] == 3
    assert client.get(f"/jobs/{job}/scores", params={"kind": "sig", "id": "NOPE"}).status_code == 404


def test_download_all_is_one_zip_of_every_file(client, job):
    files = {f["name"] for f in client.get(f"/jobs/{job}/downloads").json()["files"]}
    r = client.get(f"/jobs/{job}/download-all")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert f"opencmap-{job[:8]}.zip" in r.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert set(zf.namelist()) == files
        one = zf.read("pert_summary.tsv").decode()
    assert one == client.get(f"/jobs/{job}/downloads/pert_summary.tsv").text


def test_export_gmt_and_grp(client, job, programs):
    used = client.get(f"/jobs/{job}").json()["queries"][0]
    gmt = client.get(f"/jobs/{job}/export", params={"format": "gmt"})
    lines = [line.split("\t") for line in gmt.text.splitlines()]
    assert [x[0] for x in lines] == ["A_UP", "A_DN"]
    assert lines[0][2:] == used["up_genes"] and lines[1][2:] == used["down_genes"]
    assert 'filename="A.gmt"' in gmt.headers["content-disposition"]
    grp = client.get(f"/jobs/{job}/export", params={"format": "grp", "side": "down"}).text.splitlines()
    assert grp[0].startswith("#") and grp[1:] == used["down_genes"]
    # the export reads back as the same query
    from opencmap.io import read_gmt

    path = __import__("pathlib").Path(__import__("tempfile").mkdtemp()) / "q.gmt"
    path.write_text(gmt.text)
    sets = {s.name: list(s.genes) for s in read_gmt(path)}
    assert sets == {"A_UP": used["up_genes"], "A_DN": used["down_genes"]}


def test_cancel_and_delete_jobs(client, programs):
    queries = [_query(programs, name=f"q{i}", prog="AB"[i % 2]) for i in range(6)]
    job = client.post("/jobs", json={"queries": queries}).json()
    r = client.post(f"/jobs/{job['id']}/cancel")
    if r.status_code == 200:  # cancelled while queued or running
        deadline = time.monotonic() + 60
        while client.get(f"/jobs/{job['id']}").json()["status"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.2)
        status = client.get(f"/jobs/{job['id']}").json()
        assert status["status"] in ("failed", "done")  # done: it finished before the next progress report
        if status["status"] == "failed":
            assert status["error"] == "cancelled by the user"
    else:  # it had already finished
        assert r.status_code == 422 and "only queued or running" in r.json()["error"]["message"]
    assert client.post(f"/jobs/{job['id']}/cancel").status_code == 422  # finished jobs cannot be cancelled
    assert client.delete(f"/jobs/{job['id']}").status_code == 204
    assert client.get(f"/jobs/{job['id']}").status_code == 404
    assert client.delete(f"/jobs/{job['id']}").status_code == 404
    assert job["id"] not in {j["id"] for j in client.get("/jobs", params={"limit": 500}).json()["items"]}


def test_docs_are_served_locally(server):
    page = httpx.get(f"{server.url}/api/docs")
    assert page.status_code == 200
    assert "/api/docs-assets/swagger-ui-bundle.js" in page.text and "cdn." not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        r = httpx.get(f"{server.url}/api/docs-assets/{asset}")
        assert r.status_code == 200 and len(r.content) > 10_000, asset



def test_errors_are_pages_for_browsers_and_json_for_the_api(server):
    html = {"Accept": "text/html,application/xhtml+xml"}
    r = httpx.get(f"{server.url}/ui/nowhere", headers=html)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "Page not found" in r.text and 'href="/ui/#/"' in r.text
    api = httpx.get(f"{server.url}/api/v1/jobs/{'0' * 32}", headers=html)
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"
    plain = httpx.get(f"{server.url}/ui/nowhere")
    assert plain.status_code == 404 and plain.json()["error"]["code"] == "not_found"


def test_server_errors_under_ui_are_pages_and_json_under_api():
    """A crash is a page for a browser on /ui and the JSON envelope on /api (in-process app)."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from opencmap.api.error_handlers import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/ui/boom")
    @app.get("/api/v1/boom")
    def boom() -> None:
        raise RuntimeError("secret detail")

    client = TestClient(app, raise_server_exceptions=False)
    page = client.get("/ui/boom", headers={"Accept": "text/html"})
    assert page.status_code == 500 and page.headers["content-type"].startswith("text/html")
    assert "Something went wrong on the server" in page.text and "secret detail" not in page.text
    api = client.get("/api/v1/boom", headers={"Accept": "text/html"})
    assert api.status_code == 500 and api.json()["error"]["code"] == "internal_error"


def test_heatmap_values_are_the_pert_cell_scores(client, job):
    """The heatmap reads the cell rows from the level's arrays: each value is the pert_cell score
    of that perturbagen in that cell line, empty where it was not profiled."""
    hm = client.get(f"/jobs/{job}/heatmap", params={"n": 10, "controls": "true"}).json()
    cells = client.get(f"/jobs/{job}/results", params={"level": "pert_cell", "limit": 1000}).json()["items"]
    score = {(r["pert_id"], r["cell_id"]): r[hm["metric"]] for r in cells}
    for i, pert in enumerate(hm["rows"]):
        for j, cell in enumerate(hm["columns"]):
            expected = score.get((pert, cell))
            assert (hm["values"][i][j] is None) == (expected is None), (pert, cell)
            if expected is not None:
                assert hm["values"][i][j] == pytest.approx(expected), (pert, cell)
