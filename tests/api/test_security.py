"""Security settings in-process (TestClient): CORS only when configured, streamed body limit, token."""

from __future__ import annotations

import warnings

import pytest

from opencmap.api import Settings, create_app

with warnings.catch_warnings():  # starlette's TestClient warns about its httpx backend at import
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture
def make_client(test_store, tmp_path):
    store, pcl, _ = test_store

    def make(**options):
        app = create_app(Settings(store_path=store, pcl_path=pcl, db_path=tmp_path / "jobs.sqlite", **options))
        return TestClient(app)

    return make


def test_cors_only_for_configured_origins(make_client):
    with make_client(cors_origins=["http://lab.example"]) as c:
        ok = c.get("/api/v1/health", headers={"Origin": "http://lab.example"})
        assert ok.headers["access-control-allow-origin"] == "http://lab.example"
        other = c.get("/api/v1/health", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_streamed_body_over_the_limit_is_refused(make_client):
    def chunks():
        for _ in range(20):
            yield b"x" * 1024

    with make_client(max_body_bytes=4096) as c:
        r = c.post("/api/v1/queries", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "4096" in r.json()["error"]["message"]
        r = c.post("/api/v1/queries/validate", json={"queries": [{"name": "q", "up": ["1001"]}]})
        assert r.status_code == 200  # small bodies still pass (replayed to the app)


def test_token_accepts_both_headers_and_guards_the_ui_data(make_client):
    with make_client(api_token="t0ken") as c:
        assert c.get("/api/v1/cells").status_code == 401
        assert c.get("/api/v1/cells", headers={"Authorization": "Bearer t0ken"}).status_code == 200
        assert c.get("/api/v1/cells", headers={"X-API-Token": "t0ken"}).status_code == 200
        assert c.get("/ui/").status_code == 200  # the static UI loads, then asks for the token
        assert c.get("/api/v1/openapi.json").status_code == 200
