"""Fixtures for the browser tests: a real server and Debian's chromium driven by Playwright.

Chromium is never downloaded (no ``playwright install``): the system ``/usr/bin/chromium`` is
used. Without it the tests are skipped locally and fail on CI (``CI`` set).
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the UI tests need the 'serve' extra")

CHROMIUM = Path(os.environ.get("OPENCMAP_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

_SERVER = runpy.run_path(str(Path(__file__).resolve().parents[1] / "api" / "server.py"))


def _require_browser() -> None:
    reasons = []
    if not CHROMIUM.exists():
        reasons.append(f"{CHROMIUM} is absent (apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        reasons.append("the playwright Python package is not installed (test extra)")
    if reasons:
        msg = "browser tests need " + "; ".join(reasons)
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory):
    _require_browser()
    root = tmp_path_factory.mktemp("ui")
    store, pcl, programs = _SERVER["build_test_store"](root)
    srv = _SERVER["Server"](store, root / "jobs.sqlite", pcl)
    yield srv, programs
    srv.stop()


@pytest.fixture(scope="session")
def browser():
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.js_errors = errors  # type: ignore[attr-defined]
    urls: list[str] = []
    pg.on("request", lambda request: urls.append(request.url))
    yield pg
    context.close()
    # nothing may load from another host: every request goes to the test server on 127.0.0.1
    outside = [u for u in urls if not u.startswith(("http://127.0.0.1:", "data:", "blob:"))]
    assert not outside, f"the UI requested other hosts: {outside[:5]}"


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
