"""Fixtures: a test store and one real server process for the whole session."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the API tests need the 'serve' extra")
httpx = pytest.importorskip("httpx", reason="the API tests need httpx (test extra)")

_SERVER = runpy.run_path(str(Path(__file__).with_name("server.py")))
Server = _SERVER["Server"]
build_test_store = _SERVER["build_test_store"]


@pytest.fixture(scope="session")
def test_store(tmp_path_factory):
    """(store path, PCL GMT path, gene programs)."""
    return build_test_store(tmp_path_factory.mktemp("api-store"))


@pytest.fixture(scope="session")
def server(test_store, tmp_path_factory):
    store, pcl, _ = test_store
    srv = Server(store, tmp_path_factory.mktemp("api-db") / "jobs.sqlite", pcl)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def client(server):
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=60.0) as c:
        yield c


@pytest.fixture(scope="session")
def programs(test_store):
    return test_store[2]


@pytest.fixture
def app_client(test_store, tmp_path):
    """``app_client(**settings)``: an in-process client (``with app_client() as c``) of an app on the
    test store, its job database under ``tmp_path``."""
    import warnings

    from opencmap.api import Settings, create_app

    with warnings.catch_warnings():  # starlette's TestClient warns about its httpx backend at import
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    store, pcl, _ = test_store
    return lambda **options: TestClient(create_app(Settings(store_path=store, pcl_path=pcl, db_path=tmp_path / "jobs.sqlite", **options)))


@pytest.fixture
def finished_job():
    """``finished_job(client, job_id)``: poll ``GET /api/v1/jobs/{id}`` until it is done or failed."""
    import time

    def wait(client, job_id, timeout=120.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = client.get(f"/api/v1/jobs/{job_id}").json()
            if job["status"] in ("done", "failed"):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish")

    return wait


@pytest.fixture
def make_client(app_client):
    """A factory of in-process TestClients on a fresh job database (``make(**settings)``): :func:`app_client`."""
    return app_client
