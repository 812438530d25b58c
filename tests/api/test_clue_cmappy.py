"""cmapPy's own ClueApiClient, unchanged, against a served store (in the pinned cmapPy venv).

The venv is the one ``tools/cmappy_interop.py`` creates (cmapPy 4.0.1 + its requests); the test
skips when it does not exist (create it with ``python tools/cmappy_interop.py``), as tests never
install packages. The client side runs in a subprocess: the documented calls of
``cmapPy.clue_api_client`` (filter and count queries on perts, genes, cells, sigs; the helper
modules pert_queries / gene_queries / cell_queries), a job submitted with ``run_post``, polled
with ``run_filter_query`` on ``jobs/findByJobId/<id>``, its archive downloaded with requests and
read with cmapPy's GCTX parser. What cmapPy saw is compared here with the library's own answers.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from opencmap.query.engine import run_query

REPO = Path(__file__).resolve().parents[2]
PINS = "cmappy==4.0.1 numpy==1.23.5 pandas==1.5.3 h5py==3.8.0"

CLIENT = r'''
import io, json, sys, tarfile, tempfile, time
import requests
from cmapPy.clue_api_client.clue_api_client import ClueApiClient
from cmapPy.clue_api_client import pert_queries, gene_queries, cell_queries
from cmapPy.pandasGEXpress.parse import parse

job = json.loads(sys.argv[1])
cao = ClueApiClient(base_url=job["base_url"], user_key=job["user_key"])
out = {}
out["iname_map"] = pert_queries.retrieve_pert_id_pert_iname_map(["BRD-000", "BRD-004", "BRD-999"], cao)
out["type_map"] = pert_queries.retrieve_pert_id_pert_type_map(["BRD-000"], cao)
out["genes_in_api"] = sorted(gene_queries.are_genes_in_api(cao, ["GENE0", "GENE42", "NOT_A_GENE"]))
out["cell_in_api"] = [cell_queries.is_cell_line_in_api(cao, "A375"), cell_queries.is_cell_line_in_api(cao, "no such cell")]
out["one_gene"] = cao.run_filter_query("genes", {"where": {"entrez_id": 1005}})
out["two_genes"] = len(cao.run_filter_query("genes", {"where": {"entrez_id": {"inq": [1005, 1207]}}}))
out["no_pert"] = cao.run_filter_query("perts", {"where": {"pert_id": "BRD-K12345678"}})
out["sig_count"] = cao.run_count_query("sigs", {"cell_id": "A375"})
out["sigs"] = cao.run_filter_query("sigs", {"where": {"pert_id": "BRD-001", "cell_id": "MCF7"}, "fields": {"sig_id": True}, "order": "sig_id ASC"})
try:
    cao.run_filter_query("fakeresource", {})
    out["fake"] = "no error"
except Exception as exc:
    out["fake"] = str(exc)
posted = cao.run_post("jobs", {"tool_id": "sig_gutc_tool", "name": "cmappy_job", "data_type": "L1000",
                               "uptag-cmapfile": job["up"], "dntag-cmapfile": job["dn"]})
job_id = posted["result"]["job_id"]
for _ in range(600):
    status = cao.run_filter_query("jobs/findByJobId/" + job_id, {})
    if status["status"] in ("completed", "failed"):
        break
    time.sleep(0.2)
out["status"] = {k: status[k] for k in ("status", "download_status", "errorMessage", "tool_id", "name")}
archive = requests.get("http:" + status["download_url"], headers={"user_key": job["user_key"]})
tmp = tempfile.mkdtemp()
with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tf:
    tf.extractall(tmp)
root = tmp + "/cmappy_job.sig_gutc_tool." + job_id + "/matrices/gutc/"
for name in ("ns_pert_summary", "ps_pcl_summary", "ns_sig"):
    g = parse(root + name + ".gctx")
    out[name] = {"rids": [str(r) for r in g.data_df.index], "cids": [str(c) for c in g.data_df.columns],
                 "values": g.data_df.to_numpy().astype(float).tolist(), "row_fields": sorted(g.row_metadata_df.columns)}
print(json.dumps(out))
'''


def _cmappy_python() -> Path:
    folder = Path(os.environ.get("OPENCMAP_CMAPPY_VENV") or Path.home() / ".cache" / "opencmap" / "cmappy-venv")
    python = folder / "bin" / "python"
    stamp = folder / "opencmap-pins.txt"
    if not python.exists() or not stamp.exists() or stamp.read_text().split() != PINS.split():
        pytest.skip(f"no pinned cmapPy venv at {folder}; create it with `python tools/cmappy_interop.py`")
    return python


def test_cmappy_clue_api_client_unchanged(server, test_store, programs):
    python = _cmappy_python()
    up, dn = programs["A_up"][:25], programs["A_dn"][:25]
    job = {
        "base_url": f"{server.url}/api",
        "user_key": "any-key",
        "up": "TAG\t\t" + "\t".join(up),
        "dn": "TAG\t\t" + "\t".join(dn),
    }
    proc = subprocess.run([str(python), "-c", CLIENT, json.dumps(job)], capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])

    assert seen["iname_map"] == {"BRD-000": "compound0", "BRD-004": "compound4"}
    assert seen["type_map"] == {"BRD-000": "trt_cp"}
    assert seen["genes_in_api"] == ["GENE0", "GENE42"]
    assert seen["cell_in_api"] == [True, False]
    assert len(seen["one_gene"]) == 1 and seen["one_gene"][0]["gene_symbol"] == "GENE5"
    assert seen["two_genes"] == 2 and seen["no_pert"] == []
    from opencmap.query.store import open_store

    store = open_store(test_store[0])
    info = store.sig_info
    assert seen["sig_count"] == {"count": int((info["cell_id"] == "A375").sum())}
    assert [s["sig_id"] for s in seen["sigs"]] == sorted(info.query("pert_id == 'BRD-001' and cell_id == 'MCF7'")["sig_id"])
    assert "ClueApiClient request failed" in seen["fake"] and "404" in seen["fake"]
    assert seen["status"] == {"status": "completed", "download_status": "completed", "errorMessage": "", "tool_id": "sig_gutc_tool", "name": "cmappy_job"}

    native = run_query(store, up=up, down=dn, pcl=test_store[1], name="TAG")
    for name, level, metric in (("ns_pert_summary", "pert_summary", "ncs"), ("ps_pcl_summary", "pcl_summary", "tau"), ("ns_sig", "sig", "ncs")):
        expected = native.matrix(metric, level=level)
        got = seen[name]
        assert got["cids"] == ["TAG"]
        assert got["rids"] == list(expected.rids), name
        np.testing.assert_array_equal(np.asarray(got["values"], dtype=np.float32), expected.data, err_msg=name)
    assert "pert_id" in seen["ns_sig"]["row_fields"]
