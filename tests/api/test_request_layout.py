"""One request builder and one result-file layout for the CLI and the API (issue 14, item 5).

The CLI's ``--out`` folder and the API's download-all archive hold the same file names and the
same values for the same query; the API validates each query once; its metric list is the method
registry's.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

def _body(programs, names=("A",), n=25):
    return {"queries": [{"name": name, "up": programs[f"{name}_up"][:n], "down": programs[f"{name}_dn"][:n]} for name in names]}


def test_cli_out_folder_and_api_download_all_hold_the_same_files_and_values(app_client, test_store, programs, tmp_path):
    from opencmap.cli import cli
    from opencmap.io import read_gct

    store, pcl, _ = test_store
    body = _body(programs)
    query = body["queries"][0]
    with app_client() as c:
        r = c.post("/api/v1/queries", json=body)
        assert r.status_code == 200, r.text
        job_id = r.json()["job"]["id"]
        listed = [f["name"] for f in c.get(f"/api/v1/jobs/{job_id}/downloads").json()["files"]]
        archive = c.get(f"/api/v1/jobs/{job_id}/download-all")
        assert archive.status_code == 200
    api_dir = tmp_path / "api"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
        api_names = zf.namelist()
        zf.extractall(api_dir)
    assert api_names == listed

    cli_names: list[str] = []
    for fmt in ("tsv", "gctx"):  # download-all holds both: the long tables and the matrices
        res = CliRunner().invoke(
            cli,
            ["query", str(store), "--pcl", str(pcl), "--name", "A", "--up-genes", ",".join(query["up"]),
             "--down-genes", ",".join(query["down"]), "--out", str(tmp_path / fmt), "--format", fmt],
            catch_exceptions=False,
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        cli_names += [p.name for p in sorted((tmp_path / fmt).iterdir()) if p.name not in cli_names]
    assert sorted(cli_names) == sorted(api_names)
    assert "sig_tau.gctx" in api_names and "pert_summary_ncs.gctx" in api_names and "sig.tsv" in api_names

    for name in api_names:
        cli_path = tmp_path / ("gctx" if name.endswith(".gctx") else "tsv") / name
        api_path = api_dir / name
        if name.endswith(".gctx"):
            a, b = read_gct(cli_path), read_gct(api_path)
            assert list(a.rids) == list(b.rids) and list(a.cids) == list(b.cids), name
            np.testing.assert_array_equal(a.data, b.data, err_msg=name)
            pd.testing.assert_frame_equal(a.row_meta, b.row_meta, obj=name)
        elif name == "describe.json":
            assert json.loads(cli_path.read_text()) == json.loads(api_path.read_text())
        else:  # the tables and notes.txt: the same text
            assert cli_path.read_text() == api_path.read_text(), name


def test_the_api_validates_each_query_once(app_client, finished_job, programs, monkeypatch):
    import opencmap.query.genesets as genesets

    calls: list[str] = []
    real = genesets.validate_query

    def counting(query, *args, **kwargs):
        if query.name in ("A", "B"):  # not the server's warm-up queries, nor the FDR's random ones
            calls.append(query.name)
        return real(query, *args, **kwargs)

    import opencmap.api.execution
    import opencmap.query.engine
    import opencmap.query.request

    for module in (genesets, opencmap.query.engine, opencmap.api.execution, opencmap.query.request):
        if hasattr(module, "validate_query"):  # wherever the name was imported, so no call escapes the count
            monkeypatch.setattr(module, "validate_query", counting)
    body = _body(programs, names=("A", "B"))
    with app_client(max_sync_queries=2) as c:
        r = c.post("/api/v1/queries", json=body)  # synchronous: checked, then run at once
        assert r.status_code == 200, r.text
        assert sorted(calls) == ["A", "B"]
        calls.clear()
        r = c.post("/api/v1/jobs", json={**body, "min_genes": 5})  # a batch job: checked at submit, run by a worker
        assert r.status_code == 202, r.text
        assert finished_job(c, r.json()["id"])["status"] == "done"
        assert sorted(calls) == ["A", "B"]
        calls.clear()
        bad = _body(programs, names=("A",))
        bad["queries"][0]["up"] = ["NOT_A_GENE"]
        bad["queries"][0]["down"] = []
        r = c.post("/api/v1/queries", json=bad)  # refused by the check: no job, no second validation
        assert r.status_code >= 400 and calls == ["A"]


def test_old_matrix_names_are_still_served_and_equal_the_new_ones(app_client, programs):
    with app_client() as c:
        job_id = c.post("/api/v1/queries", json=_body(programs)).json()["job"]["id"]
        new = c.get(f"/api/v1/jobs/{job_id}/downloads/sig_ncs.gctx")
        old = c.get(f"/api/v1/jobs/{job_id}/downloads/sig__ncs.gctx")
        assert new.status_code == old.status_code == 200
        assert f"opencmap-{job_id[:8]}-sig_ncs.gctx" in new.headers["content-disposition"]
        for bad in ("sig___ncs.gctx", "sig_.gctx", "nolevel_ncs.gctx", "sig_ncs.parquet", "sig.h5ad"):
            assert c.get(f"/api/v1/jobs/{job_id}/downloads/{bad}").status_code == 404, bad


def test_the_api_metric_list_is_the_registrys_gene_set_methods(app_client):
    from opencmap.query.methods import get_method, method_names

    expected = [name for name in method_names() if get_method(name).kind == "geneset"]
    with app_client() as c:
        assert c.get("/api/v1/info").json()["metrics"] == expected
        schema = c.get("/api/v1/openapi.json").json()["components"]["schemas"]["QueryRequest"]["properties"]["metric"]
        assert schema["enum"] == expected
