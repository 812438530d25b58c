"""The Dask backend on a real two-process LocalCluster (loopback): every store scan through the
runner gives results bit-identical to the local backend, a killed worker changes nothing, and an
unreachable scheduler is one clear error."""

from __future__ import annotations

import functools
import os
import runpy
import shutil
import signal
import socket
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")

from opencmap.backends import BlockTask, DaskBackend, LocalBackend, Settings, is_distributed, resolve_backend  # noqa: E402
from opencmap.errors import BackendError, OpenCMapError, SchedulerUnreachableError  # noqa: E402
from opencmap.query.background import build_background, load_background  # noqa: E402
from opencmap.query.engine import Engine, run_query  # noqa: E402
from opencmap.query.fdr_null import load_or_build_null  # noqa: E402
from opencmap.query.genesets import Query  # noqa: E402
from opencmap.query.introspect import connectivity_matrix  # noqa: E402
from opencmap.query.store import Store, build_store  # noqa: E402

_SYNTHETIC = runpy.run_path(str(Path(__file__).resolve().parents[1] / "query" / "synthetic_level5.py"))
PCL = _SYNTHETIC["PCL"]

# several tasks per scan (the store has 90 signatures)
SETTINGS = Settings(task_signatures=16)


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes of one thread each, on loopback (no dashboard port taken)."""
    import cloudpickle

    src = str(Path(__file__).resolve().parents[2] / "src")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([src, *([old] if old else [])])  # workers import this checkout
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # this module's kernels: workers need not import it
    try:
        with distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0",
            worker_dashboard_address=None,
        ) as cl, distributed.Client(cl, set_as_default=False) as client:  # fmt: skip
            yield cl, client
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


@pytest.fixture(scope="module")
def backend(cluster):
    return DaskBackend(cluster[1], SETTINGS)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    gct, info, prog = _SYNTHETIC["make_level5"](seed=5)
    d = tmp_path_factory.mktemp("dask")
    build_store(d / "store", gct, sig_info=info)
    return d, prog


def _queries(prog):
    return [
        Query("A", up=tuple(prog["A_up"][:20]), down=tuple(prog["A_dn"][:20])),
        Query("B", up=tuple(prog["B_up"][:15]), down=tuple(prog["B_dn"][:25])),
        Query("A_up_only", up=tuple(prog["A_up"][:12])),
    ]


def _assert_same_result(a, b):
    assert set(a.levels) == set(b.levels)
    for level in a.levels:
        ma, mb = a.levels[level].metrics, b.levels[level].metrics
        assert set(ma) == set(mb), level
        for name in ma:
            x, y = np.asarray(ma[name]), np.asarray(mb[name])
            assert x.dtype == y.dtype and x.shape == y.shape
            assert x.tobytes() == y.tobytes(), f"{level}.{name} differs"  # bit for bit, NaN included


def test_dask_backend_is_a_distributed_backend(backend, cluster):
    assert is_distributed(backend) and not is_distributed(LocalBackend())
    assert backend.numba_threads() == LocalBackend(SETTINGS).numba_threads()  # client-side threads
    desc = backend.describe()
    assert desc == {"kind": "dask", "scheduler": cluster[0].scheduler_address, "workers": 2, "threads": 2}
    assert isinstance(resolve_backend(cluster[1]), DaskBackend)
    # unset task size: about 4 tasks per worker thread, never one task for a large store
    auto = DaskBackend(cluster[1], Settings())
    assert auto.task_signatures(1_000_000) == 125_000 and auto.task_signatures(90) == 90


def _block_sum(task: BlockTask) -> float:
    return float(np.arange(task.start, task.stop).sum() * task.params["scale"])


def test_map_blocks_keeps_task_order_and_sends_shared_params_once(backend, monkeypatch):
    sent: list[str] = []
    submit, map_ = backend.client.submit, backend.client.map

    def counting_submit(*args, **kwargs):
        sent.append(str(kwargs.get("key")))
        return submit(*args, **kwargs)

    def counting_map(*args, **kwargs):
        sent.extend(str(k) for k in kwargs["key"])
        return map_(*args, **kwargs)

    monkeypatch.setattr(backend.client, "submit", counting_submit)
    monkeypatch.setattr(backend.client, "map", counting_map)
    shared = {"scale": 3}
    tasks = [BlockTask("nowhere", lo, lo + 7, shared) for lo in range(0, 70, 7)]
    tasks.insert(4, BlockTask("nowhere", 100, 103, {"scale": 5}))  # parameters of its own
    assert list(backend.map_blocks(_block_sum, tasks)) == list(LocalBackend().map_blocks(_block_sum, tasks))
    assert len(sent) == 13 and sum(k.startswith("opencmap-params") for k in sent) == 2  # each parameter set: once


def test_batch_queries_equal_local_bit_for_bit(setup, backend):
    d, prog = setup
    store = Store(d / "store")
    opts = {"fdr_null_size": 50}  # the FDR nulls scored on the cluster too (small: quick)
    local = Engine(store, pcl=PCL, backend=LocalBackend(SETTINGS)).run(_queries(prog), **opts)
    remote = Engine(store, pcl=PCL, backend=backend).run(_queries(prog), **opts)
    _assert_same_result(local, remote)
    assert remote.provenance["backend"]["kind"] == "dask" and remote.provenance["backend"]["workers"] == 2
    assert local.provenance["backend"] == {"kind": "local"}
    # vector methods (another access pattern) too, through run_query
    vec = np.linspace(-1, 1, 100)
    vq = [Query("v", vector=pd.Series(vec, index=list(store.space("lm").gene_ids)))]
    a = run_query(store, queries=vq, metric="cosine", space="lm", backend=LocalBackend(SETTINGS))
    b = run_query(store, queries=vq, metric="cosine", space="lm", backend=backend)
    _assert_same_result(a, b)


def test_background_build_equals_local(setup, backend):
    d, _ = setup
    for name, be in (("local", LocalBackend(SETTINGS)), ("dask", backend)):
        shutil.copytree(d / "store", d / f"bg_{name}")
        build_background(d / f"bg_{name}", pcl=PCL, tail="all", backend=be)
    a, b = Store(d / "bg_local"), Store(d / "bg_dask")
    keys = sorted(a.manifest["backgrounds"])
    assert keys == sorted(b.manifest["backgrounds"]) and len(keys) >= 6
    for level in ("sig", "pert_cell", "pert_summary", "pcl_summary"):
        for tail in ("both", "up", "down"):
            x, y = load_background(a, level, tail), load_background(b, level, tail)
            assert x is not None and y is not None
            assert np.asarray(x.values).tobytes() == np.asarray(y.values).tobytes()
            assert np.array_equal(x.counts, y.counts) and list(x.ids) == list(y.ids)


def test_background_build_in_chunks_on_the_cluster_equals_local(setup, cluster):
    """Over Settings.background_memory each chunk of queries is scored through the cluster: the
    backgrounds are the bytes of the local one-pass build."""
    d, _ = setup
    buffers = SETTINGS.query_block_bytes + SETTINGS.es_block_bytes
    small = SETTINGS.replace(background_memory=buffers + 64_000)  # 90 signatures x 39 exemplars: chunks of 10 queries
    for name, be in (("local1", LocalBackend(SETTINGS)), ("dask_chunks", DaskBackend(cluster[1], small))):
        shutil.copytree(d / "store", d / f"bg_{name}")
        build_background(d / f"bg_{name}", pcl=PCL, tail="all", backend=be)
    a, b = Store(d / "bg_local1"), Store(d / "bg_dask_chunks")
    assert sorted(a.manifest["backgrounds"]) == sorted(b.manifest["backgrounds"])
    for key, entry in a.manifest["backgrounds"].items():
        for fname in ("values.npy", "counts.npy"):
            assert (a.path / entry["dir"] / fname).read_bytes() == (b.path / b.manifest["backgrounds"][key]["dir"] / fname).read_bytes()


def test_fdr_null_and_all_vs_all_equal_local(setup, backend):
    d, _ = setup
    store = Store(d / "store")
    opts = {"n_up": 10, "n_down": 10, "n_random": 40, "seed": 3, "values": True, "cache": False}
    a = load_or_build_null(store, backend=LocalBackend(SETTINGS), **opts)
    b = load_or_build_null(store, backend=backend, **opts)
    for field in ("counts", "scale", "nonzero", "pool", "values"):
        assert np.asarray(getattr(a, field)).tobytes() == np.asarray(getattr(b, field)).tobytes(), field
    ids = list(store.sig_ids[:30])
    x = connectivity_matrix(store, ids, backend=LocalBackend(SETTINGS))
    y = connectivity_matrix(store, ids, backend=backend)
    assert x.shape == (30, 30) and np.asarray(x.data).tobytes() == np.asarray(y.data).tobytes()


def _kill_first_time(kernel, marker, task):
    """Kill this worker process the first time any task runs (the marker file says it was done)."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return kernel(task)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


class _KillingBackend(DaskBackend):
    """Runs every kernel through :func:`_kill_first_time`."""

    marker = ""

    def map_blocks(self, kernel, tasks):
        return super().map_blocks(functools.partial(_kill_first_time, kernel, self.marker), tasks)


def test_a_killed_worker_does_not_change_the_result(setup, cluster, tmp_path):
    d, prog = setup
    store = Store(d / "store")
    killing = _KillingBackend(cluster[1], SETTINGS)
    killing.marker = str(tmp_path / "killed")
    remote = Engine(store, pcl=PCL, backend=killing).run(_queries(prog), fdr=False)
    assert Path(killing.marker).exists()  # a worker was killed in the middle of the job
    local = Engine(store, pcl=PCL, backend=LocalBackend(SETTINGS)).run(_queries(prog), fdr=False)
    _assert_same_result(local, remote)
    cluster[1].wait_for_workers(2, timeout=30)  # the nanny restarted it, for the tests after


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_scheduler_is_one_clear_error(setup, monkeypatch, capsys):
    address = f"tcp://127.0.0.1:{_free_port()}"
    with pytest.raises(SchedulerUnreachableError, match="no Dask scheduler reachable at " + address) as err:
        DaskBackend.from_scheduler(address, timeout=0.5)
    assert isinstance(err.value, BackendError) and isinstance(err.value, OpenCMapError) and err.value.address == address
    assert "\n" not in str(err.value)
    with pytest.raises(SchedulerUnreachableError, match="not a scheduler address"):
        DaskBackend.from_scheduler("tcp://no-port-here", timeout=0.5)

    from opencmap.cli import main

    monkeypatch.setenv("OPENCMAP_SCHEDULER_TIMEOUT", "0.5")
    with pytest.raises(SystemExit) as ex:
        main(["query", str(setup[0] / "store"), "--up-genes", ",".join(setup[1]["A_up"][:12]), "--scheduler", address])
    assert ex.value.code == 2
    err_lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err_lines) == 1 and err_lines[0].startswith("error: no Dask scheduler reachable at " + address)


def test_cli_query_with_scheduler_writes_the_same_files(setup, cluster, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from opencmap.cli import cli

    d, prog = setup
    up, dn = ",".join(prog["A_up"][:20]), ",".join(prog["A_dn"][:20])
    outs = {}
    for name, extra in (("local", []), ("dask", ["--scheduler", cluster[0].scheduler_address])):
        extra = ["--fdr-null-size", "50", *extra]
        out = tmp_path / name
        res = CliRunner().invoke(
            cli, ["query", str(d / "store"), "--up-genes", up, "--down-genes", dn, "--out", str(out), "--format", "tsv", *extra],
            catch_exceptions=False,
        )
        assert res.exit_code == 0, res.output
        outs[name] = out
    assert "note: running on the Dask cluster at " + cluster[0].scheduler_address in res.stderr
    files = sorted(p.name for p in outs["local"].iterdir())
    assert files == sorted(p.name for p in outs["dask"].iterdir()) and "sig.tsv" in files
    for name in files:
        a, b = (outs[k] / name for k in ("local", "dask"))
        if name == "describe.json":  # the provenance names the backend; nothing else differs
            import json

            ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
            assert ja["provenance"].pop("backend") == {"kind": "local"} and jb["provenance"].pop("backend")["kind"] == "dask"
            assert ja == jb
        elif name == "notes.txt":  # the same, but for the backend named in its provenance line
            import re

            ta, tb = a.read_text(), b.read_text()
            assert "backend=(kind=local)" in ta and "backend=(kind=dask, scheduler=" + cluster[0].scheduler_address in tb
            strip = functools.partial(re.sub, r"backend=\([^)]*\)", "backend=")
            assert strip(ta) == strip(tb)
        elif a.is_file():
            assert a.read_bytes() == b.read_bytes(), name


def test_api_batch_jobs_run_on_the_cluster_and_sync_queries_stay_local(setup, backend, tmp_path):
    pytest.importorskip("fastapi", reason="the API needs the 'serve' extra")
    import time
    import warnings

    from opencmap.api import Settings as ApiSettings
    from opencmap.api import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    d, prog = setup
    settings = ApiSettings(store_path=d / "store", db_path=tmp_path / "jobs.sqlite", scheduler=backend.address)
    query = {"name": "A", "up": prog["A_up"][:20], "down": prog["A_dn"][:20]}
    with TestClient(create_app(settings, batch_backend=backend)) as client:
        info = client.get("/api/v1/info").json()
        assert info["execution"] == {"sync": {"kind": "local"}, "batch": {"kind": "dask", "workers": 2, "threads": 2}}
        assert backend.address.split("://")[1] not in client.get("/api/v1/info").text  # no internal address
        sync = client.post("/api/v1/queries", json={"queries": [query], "fdr_null_size": 50})
        assert sync.status_code == 200, sync.text
        job = client.post("/api/v1/jobs", json={"queries": [query], "fdr_null_size": 50})
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]
        deadline = time.monotonic() + 60
        while (status := client.get(f"/api/v1/jobs/{job_id}").json())["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline, "the job did not finish"
            time.sleep(0.1)
        assert status["status"] == "done", status
        assert status["describe"]["provenance"]["backend"]["kind"] == "dask"
        assert sync.json()["job"]["describe"]["provenance"]["backend"] == {"kind": "local"}
        rows = client.get(f"/api/v1/jobs/{job_id}/results", params={"query": "A", "level": "sig", "limit": 1000}).json()
        srows = client.get(f"/api/v1/jobs/{sync.json()['job']['id']}/results", params={"query": "A", "level": "sig", "limit": 1000}).json()
        assert rows["items"] == srows["items"] and rows["total"] == 90  # same connections, same values


def test_store_build_and_append_on_the_cluster_are_byte_identical(backend, tmp_path, monkeypatch):
    """The store build's block tasks (ranking) run on the workers; the store is the local build's, file for file."""
    from opencmap.io import write_gctx
    from opencmap.query.store import append_store

    sent: list[str] = []
    map_ = backend.client.map
    monkeypatch.setattr(backend.client, "map", lambda *a, **k: sent.extend(map(str, k["key"])) or map_(*a, **k))

    helpers = runpy.run_path(str(Path(__file__).resolve().parents[1] / "io" / "store" / "test_store_build_tasks.py"))
    first, second = helpers["_matrix"](150, 1, "s"), helpers["_matrix"](40, 2, "t")
    write_gctx(first, tmp_path / "first.gctx")
    local = build_store(tmp_path / "local", tmp_path / "first.gctx", block_size=40)
    remote = build_store(tmp_path / "remote", tmp_path / "first.gctx", block_size=40, backend=backend)
    append_store(local.path, second, block_size=25)
    append_store(remote.path, second, block_size=25, backend=backend)
    assert Store(remote.path).n_signatures == 190
    assert len(sent) == 4 + 2 and all("build_block_task" in k for k in sent)  # every block ranked on the cluster
    helpers["_assert_same_store"](local.path, remote.path)


def test_cli_process_and_store_build_with_scheduler_write_the_local_files(cluster, tmp_path):
    """``opencmap process --scheduler`` (plates, replicate sets and CGS as tasks on the workers) and
    ``opencmap store build --scheduler`` write what the local commands write, byte for byte."""
    from click.testing import CliRunner

    from opencmap.cli import cli

    address = cluster[0].scheduler_address
    run_helpers = runpy.run_path(str(Path(__file__).resolve().parents[1] / "pipeline" / "test_run.py"))
    run_helpers["make_level2"](tmp_path)
    outs = {}
    for name, extra in (("local", []), ("dask", ["--scheduler", address])):
        res = CliRunner().invoke(
            cli, ["process", "--level", "2", str(tmp_path / "level2.gctx"), str(tmp_path / name),
                  "--inst-info", str(tmp_path / "inst_info.txt"), "--no-progress", *extra],
            catch_exceptions=False,
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        outs[name] = tmp_path / name
    assert "note: running on the Dask cluster at " + address in res.stderr
    for name in ("level4.gctx", "level5.gctx", "sig_info.txt", "censored.txt"):
        assert (outs["local"] / name).read_bytes() == (outs["dask"] / name).read_bytes(), name

    store_helpers = runpy.run_path(str(Path(__file__).resolve().parents[1] / "io" / "store" / "test_store_build_tasks.py"))
    for name, extra in (("store_local", []), ("store_dask", ["--scheduler", address])):
        res = CliRunner().invoke(
            cli, ["store", "build", str(outs["local"] / "level5.gctx"), str(tmp_path / name), "--block-size", "8",
                  "--sig-info", str(outs["local"] / "sig_info.txt"), *extra],
            catch_exceptions=False,
        )  # fmt: skip
        assert res.exit_code == 0, res.output
    assert "note: running on the Dask cluster at " + address in res.stderr
    store_helpers["_assert_same_store"](tmp_path / "store_local", tmp_path / "store_dask")
