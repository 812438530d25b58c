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


LONG_NAME = "adrenergic-receptor-agonist-with-a-very-long-name"


def build_ui_store(root: Path):
    """The API test store with what the workbench shows: perturbagen types other than compounds
    (BRD-010 knockdown, BRD-011 over-expression; DMSO stays a control), times (6 h in PC3, else
    24 h), quality figures (TAS, distil_cc_q75, distil_nsample) and one long perturbagen name."""
    import numpy as np

    from opencmap.core.gct import GCT
    from opencmap.core.genesets import GeneSet
    from opencmap.io import write_gmt
    from opencmap.query.background import build_background
    from opencmap.query.store import build_store

    gct, info, programs = _SERVER["make_level5"]()
    info = info.copy()
    info.loc[info["pert_id"] == "BRD-010", "pert_type"] = "trt_sh"
    info.loc[info["pert_id"] == "BRD-011", "pert_type"] = "trt_oe"
    info.loc[info["pert_id"] == "BRD-009", "pert_iname"] = LONG_NAME
    info["pert_itime"] = np.where(info["cell_id"] == "PC3", "6 h", "24 h")
    rng = np.random.default_rng(17)
    info["tas"] = np.round(rng.uniform(0.1, 0.9, len(info)), 3)
    info["distil_cc_q75"] = np.round(rng.uniform(0.0, 0.8, len(info)), 3)
    info["distil_nsample"] = rng.integers(2, 6, len(info))
    gct = GCT(gct.data, rids=gct.rids, cids=gct.cids, row_meta=gct.row_meta, col_meta=info.set_index("sig_id"))
    pcls = _SERVER["PCL"]
    store = build_store(root / "store", gct, sig_info=info, block_size=50)
    build_background(store, pcl=pcls)
    pcl_path = root / "pcl.gmt"
    write_gmt([GeneSet(name, "", tuple(members)) for name, members in pcls.items()], pcl_path)
    return root / "store", pcl_path, programs


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory):
    _require_browser()
    root = tmp_path_factory.mktemp("ui")
    store, pcl, programs = _SERVER["build_test_store"](root)
    srv = _SERVER["Server"](store, root / "jobs.sqlite", pcl)
    yield srv, programs
    srv.stop()


@pytest.fixture(scope="session")
def wb_server(tmp_path_factory):
    """A server on :func:`build_ui_store` (its own store: other types change NCS groups and so scores)."""
    _require_browser()
    root = tmp_path_factory.mktemp("ui-workbench")
    store, pcl, programs = build_ui_store(root)
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


@pytest.fixture(params=[1440])
def width(request) -> int:
    """Viewport width of ``page`` (tests parametrise it indirectly, e.g. 1440 and 390 px)."""
    return int(request.param)


@pytest.fixture
def page(browser, width):
    ARTIFACTS.mkdir(exist_ok=True)
    mobile = width < 600
    context = browser.new_context(
        viewport={"width": width, "height": 844 if mobile else 1000}, accept_downloads=True, is_mobile=mobile, has_touch=mobile
    )
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
