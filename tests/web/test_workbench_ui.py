"""The workbench in the browser (issue 17) at 1440 and 390 px: perturbagen types and controls, the
PCL x cell view, a heatmap that follows the table and opens detail pages, detail pages with the
query's scores, leading-edge gene labels, loading states, job actions, download-all, query export,
the guide, offline API docs and error pages. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import io
import re
import zipfile

import httpx
import pytest

pytest.importorskip("playwright", reason="browser tests need playwright (test extra)")
from playwright.sync_api import expect  # noqa: E402

LONG_NAME = "adrenergic-receptor-agonist-with-a-very-long-name"
WIDTHS = [1440, 390]
both_widths = pytest.mark.parametrize("width", WIDTHS, indirect=True)


@pytest.fixture(scope="module")
def job(wb_server):
    srv, programs = wb_server
    q = {"name": "progA", "up": programs["A_up"][:25], "down": programs["A_dn"][:25]}
    r = httpx.post(f"{srv.url}/api/v1/queries", json={"queries": [q]}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["job"]["id"]


def _no_overflow(page, width):
    sw = page.evaluate("document.scrollingElement.scrollWidth")
    assert sw <= width, f"the page is {sw} px wide in a {width} px viewport"


def _cell_point(page, n_rows, i, n_cols, j):
    """Page coordinates of heatmap cell (row i, column j); row 0 is at the top."""
    drag = page.locator("#heatmap .nsewdrag").first
    drag.scroll_into_view_if_needed()
    bb = drag.bounding_box()
    return bb["x"] + bb["width"] * (j + 0.5) / n_cols, bb["y"] + bb["height"] * (i + 0.5) / n_rows


def _settled(page):
    expect(page.locator("body.loading")).to_have_count(0, timeout=30_000)
    expect(page.locator("main.stale")).to_have_count(0, timeout=30_000)
    expect(page.locator("#heatmap.busy")).to_have_count(0, timeout=30_000)
    expect(page.locator("#heatmap[data-rendered='1']")).to_have_count(1)


def _ids(page):
    return page.locator("table.results tbody tr td:first-child").all_inner_texts()


@both_widths
def test_types_controls_and_heatmap_follow_the_table(wb_server, job, page, width, artifacts):
    srv, _ = wb_server
    page.goto(f"{srv.url}/ui/#/results/{job}")
    table = page.locator("table.results[data-level=pert_summary]")
    expect(table).to_be_visible(timeout=30_000)
    expect(page.locator("#heatmap .main-svg").first).to_be_visible(timeout=30_000)
    ids = _ids(page)
    assert len(ids) == 12 and "DMSO" not in ids  # controls hidden by default
    assert "knockdown (shRNA)" in table.inner_text() and "over-expression" in table.inner_text()
    # the heatmap shows the table's rows in the table's order
    rows = page.eval_on_selector("#heatmap", "e => JSON.parse(e.dataset.rows)")
    assert rows == ids
    ticks = page.eval_on_selector_all("#heatmap .ytick text", "els => els.map((e) => e.textContent)")
    if width >= 1000:
        assert f"{LONG_NAME} (compound)" in ticks  # full label, with the type named as in the table
        assert not any("(trt_" in t or "(ctl_" in t for t in ticks)  # no raw pert_type codes
        box = page.locator("#heatmap .ytick text", has_text=LONG_NAME).bounding_box()
        plot = page.locator("#heatmap").bounding_box()
        assert box["x"] >= plot["x"] - 1, "the label is cut on the left"
    else:
        assert any(t.startswith(LONG_NAME[:20]) and t.endswith("…") for t in ticks)
    # full label on hover, whatever the width
    i = rows.index("BRD-009")
    page.mouse.move(*_cell_point(page, len(rows), i, 3, 1))
    expect(page.locator("#heatmap .hoverlayer")).to_contain_text(LONG_NAME)
    expect(page.locator("#heatmap .colorbar")).to_have_count(1)
    expect(page.locator("#hm-caption")).to_contain_text("−100")
    expect(page.locator("#hm-caption")).to_contain_text("+100")
    _no_overflow(page, width)
    page.screenshot(path=str(artifacts / f"wb-results-{width}.png"), full_page=True)

    # show controls: DMSO comes back (table and heatmap)
    page.locator("#flt-controls").check()
    expect(table.locator("tbody tr")).to_have_count(13)
    expect(page.locator("#heatmap")).to_have_attribute("data-rows", re.compile("DMSO"), timeout=30_000)
    page.locator("#flt-controls").uncheck()
    expect(table.locator("tbody tr")).to_have_count(12)
    # type filter: knockdowns only, in the table and the heatmap
    page.select_option("#flt-type", "trt_sh")
    expect(table.locator("tbody tr")).to_have_count(1)
    assert _ids(page) == ["BRD-010"]
    expect(page.locator("#heatmap")).to_have_attribute("data-rows", '["BRD-010"]', timeout=30_000)
    page.select_option("#flt-type", "")
    expect(table.locator("tbody tr")).to_have_count(12)
    # sorting the table by NCS ascending re-orders the heatmap the same way
    page.locator("th", has_text="NCS").click()
    page.locator("th", has_text="NCS").click()
    expect(page.locator("th.active")).to_contain_text("▲")
    _settled(page)
    asc = page.eval_on_selector("#heatmap", "e => JSON.parse(e.dataset.rows)")
    assert asc == _ids(page) and asc != rows

    # the perturbagen x cell table has a type column
    page.locator("button.tab", has_text="Perturbagen × cell").click()
    pc = page.locator("table.results[data-level=pert_cell]")
    expect(pc).to_be_visible()
    headers = pc.locator("th").all_inner_texts()
    assert any(h.startswith("type") for h in headers)

    # click a heatmap cell: the perturbagen's page opens
    page.locator("button.tab", has_text="Perturbagens").click()
    expect(page.locator("table.results[data-level=pert_summary]")).to_be_visible()
    _settled(page)
    rows = page.eval_on_selector("#heatmap", "e => JSON.parse(e.dataset.rows)")
    point = _cell_point(page, len(rows), 0, 3, 0)
    page.mouse.move(*point)  # plotly reports the click on the point it hovers
    page.wait_for_timeout(150)
    page.mouse.click(*point)
    expect(page).to_have_url(re.compile(rf"#/pert/{rows[0]}\?job={job}"))
    expect(page.locator("#item-scores")).to_be_visible()
    assert not page.js_errors, page.js_errors


@both_widths
def test_pcl_views_name_their_members(wb_server, job, page, width, artifacts):
    srv, _ = wb_server
    page.goto(f"{srv.url}/ui/#/results/{job}?level=pcl_cell")
    table = page.locator("table.results[data-level=pcl_cell]")
    expect(table).to_have_count(1, timeout=30_000)
    expect(table.locator("tbody tr")).to_have_count(6)
    expect(page.locator("#hm-title")).to_contain_text("PCL × cell line")
    expect(page.locator("#heatmap")).to_have_attribute("data-rows", re.compile("PCL_A"), timeout=30_000)
    _no_overflow(page, width)
    page.screenshot(path=str(artifacts / f"wb-pcl-cell-{width}.png"), full_page=True)
    page.locator("button.tab", has_text="PCLs").click()
    summary = page.locator("table.results[data-level=pcl_summary]")
    expect(summary).to_be_visible()
    headers = summary.locator("th").all_inner_texts()
    assert len(headers) == len(set(headers)), headers  # no two columns share a header
    row = summary.locator("tbody tr", has_text="PCL_A")
    for name in ("compound0", "compound1", "compound2", "compound3"):
        expect(row.locator("a", has_text=name)).to_have_count(1)
    row.locator("a", has_text="PCL_A").click()
    expect(page.locator("h1")).to_contain_text("PCL PCL_A")
    expect(page.locator("#item-scores")).to_contain_text("τ")
    expect(page.locator("#pcl-cells tbody tr")).to_have_count(3)
    members = page.locator("#pcl-members tbody tr")
    expect(members).to_have_count(4)
    expect(members.first.locator("a")).to_have_text("compound0")
    _no_overflow(page, width)
    page.screenshot(path=str(artifacts / f"wb-pcl-page-{width}.png"), full_page=True)
    assert not page.js_errors, page.js_errors


@both_widths
def test_perturbagen_and_signature_pages_show_the_scores(wb_server, job, page, width, artifacts):
    srv, _ = wb_server
    scores = httpx.get(f"{srv.url}/api/v1/jobs/{job}/scores", params={"kind": "pert", "id": "BRD-002"}).json()
    page.goto(f"{srv.url}/ui/#/pert/BRD-002?job={job}&query=progA")
    expect(page.locator("#item-scores")).to_contain_text(f"NCS {scores['pert_summary'][0]['ncs']:.3f}")
    sigs = page.locator("#pert-sigs")
    expect(sigs.locator("tbody tr")).to_have_count(6)
    headers = sigs.locator("th").all_inner_texts()
    for h in ("τ", "NCS", "TAS", "cc q75", "replicates", "time"):
        assert h in headers, headers
    tau_col = headers.index("τ")
    taus = [float(t) for t in sigs.locator(f"tbody tr td:nth-child({tau_col + 1})").all_inner_texts()]
    assert taus == sorted(taus, reverse=True) and len(taus) == 6
    grid = page.locator("#dose-time")
    assert grid.locator("thead th").all_inner_texts() == ["dose \\ time", "6 h", "24 h"]
    assert grid.locator("tbody th").all_inner_texts() == ["1 uM", "10 uM"]
    _no_overflow(page, width)
    page.screenshot(path=str(artifacts / f"wb-pert-{width}.png"), full_page=True)
    page.locator(".sort-links a", has_text="NCS").click()
    expect(page.locator(".sort-links a.active")).to_contain_text("NCS")
    ncs_col = page.locator("#pert-sigs th").all_inner_texts().index("NCS")
    ncs = [float(t) for t in page.locator(f"#pert-sigs tbody tr td:nth-child({ncs_col + 1})").all_inner_texts()]
    assert ncs == sorted(ncs, reverse=True)

    # signature page: its scores and the running sum with named leading-edge genes
    page.locator("#pert-sigs a").first.click()
    expect(page.locator("h1")).to_contain_text("Signature")
    expect(page.locator(".scores-table")).to_contain_text("NCS")
    expect(page.locator("#running-sum .main-svg").first).to_be_visible(timeout=30_000)
    sig_id = page.locator("h1").inner_text().removeprefix("Signature ").strip()
    rs = httpx.get(f"{srv.url}/api/v1/jobs/{job}/running-sum", params={"sig_id": sig_id}).json()
    symbol = {}
    for c in rs["curves"].values():
        symbol.update(zip(c["hit_genes"], c["hit_symbols"], strict=True))
    le = [symbol[g] for c in rs["curves"].values() for g in c["leading_edge"]]
    assert le
    labels = page.eval_on_selector_all("#running-sum .annotation-text", "els => els.map((e) => e.textContent)")
    assert labels and set(labels) <= set(le)  # visible labels on the plot, leading-edge genes only
    listed = page.locator("#rs-genes .gene").all_inner_texts()
    assert sorted(listed) == sorted(le)  # every leading-edge gene is named under the plot
    _no_overflow(page, width)
    page.screenshot(path=str(artifacts / f"wb-signature-{width}.png"), full_page=True)
    assert not page.js_errors, page.js_errors


def test_loading_indicator_shows_at_once_and_panels_never_go_blank(wb_server, job, page, artifacts):
    srv, _ = wb_server
    page.add_init_script(
        "(() => { const f = window.fetch; window.__delay = 0;"
        " window.fetch = (...a) => new Promise((r) => setTimeout(r, window.__delay)).then(() => f(...a)); })()"
    )
    page.goto(f"{srv.url}/ui/#/results/{job}")
    expect(page.locator("table.results[data-level=pert_summary]")).to_be_visible(timeout=30_000)
    expect(page.locator("#loading-bar")).to_be_hidden()
    page.evaluate("window.__delay = 1500")
    page.locator("button.tab", has_text="Signatures").click()
    # within 200 ms something says "loading"
    expect(page.locator("#loading-bar")).to_be_visible(timeout=200)
    expect(page.locator("#loading-note")).to_have_text("Loading…", timeout=200)
    page.wait_for_timeout(700)  # mid-load: the panels show the old view or a placeholder, never nothing
    for sel in ("#table", "#heatmap"):
        assert page.locator(sel).inner_text().strip(), f"{sel} is blank while loading"
    page.screenshot(path=str(artifacts / "wb-loading-1440.png"))
    expect(page.locator("table.results[data-level=sig]")).to_be_visible(timeout=30_000)
    expect(page.locator("#loading-bar")).to_be_hidden(timeout=10_000)
    assert not page.js_errors, page.js_errors


@both_widths
def test_job_history_rerun_delete_and_downloads(wb_server, job, page, width, artifacts):
    srv, programs = wb_server
    q = {"name": "toDelete", "up": programs["B_up"][:20], "down": programs["B_dn"][:20]}
    extra = httpx.post(f"{srv.url}/api/v1/queries", json={"queries": [q], "metric": "wtcs"}, timeout=120).json()["job"]["id"]
    page.goto(f"{srv.url}/ui/#/jobs")
    row = page.locator(f"tr[data-job='{extra}']")
    expect(row).to_be_visible()
    expect(row).to_contain_text("wtcs")  # the metric is shown
    _no_overflow(page, width)
    page.screenshot(path=str(artifacts / f"wb-jobs-{width}.png"), full_page=True)
    # delete takes two clicks
    row.locator("button[data-act=delete]").click()
    expect(row.locator("button[data-act=delete]")).to_have_text("Really delete?")
    row.locator("button[data-act=delete]").click()
    expect(page.locator(f"tr[data-job='{extra}']")).to_have_count(0)
    assert httpx.get(f"{srv.url}/api/v1/jobs/{extra}").status_code == 404
    # re-run opens a new result of the same query
    page.locator(f"tr[data-job='{job}'] button[data-act=rerun]").click()
    expect(page).to_have_url(re.compile(r"#/results/[0-9a-f]{32}"), timeout=60_000)
    new = re.search(r"#/results/([0-9a-f]{32})", page.url).group(1)
    assert new != job
    expect(page.locator("h1")).to_contain_text("Results: progA")

    # download all: one zip of every listed file
    expect(page.locator("#dl-all")).to_be_visible()
    with page.expect_download() as info:
        page.click("#dl-all")
    data = open(info.value.path(), "rb").read()
    files = {f["name"] for f in httpx.get(f"{srv.url}/api/v1/jobs/{new}/downloads").json()["files"]}
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert set(zf.namelist()) == files
    # export the query as GMT
    page.select_option("#ex-select", "gmt")
    with page.expect_download() as info:
        page.click("#ex-button")
    assert info.value.suggested_filename == "progA.gmt"
    lines = open(info.value.path()).read().splitlines()
    used = httpx.get(f"{srv.url}/api/v1/jobs/{new}").json()["queries"][0]
    assert lines[0].split("\t")[2:] == used["up_genes"] and lines[1].split("\t")[2:] == used["down_genes"]
    _no_overflow(page, width)
    page.screenshot(path=str(artifacts / f"wb-rerun-{width}.png"), full_page=True)
    assert not page.js_errors, page.js_errors


@both_widths
def test_guide_docs_and_error_pages(wb_server, page, width, artifacts):
    srv, _ = wb_server
    page.goto(f"{srv.url}/ui/#/guide")
    guide = page.locator("#guide")
    expect(guide).to_contain_text("Subramanian et al., 2017")
    for anchor in ("guide-tau", "guide-ncs", "guide-fdr", "guide-pcl", "guide-summaries"):
        expect(page.locator(f"#{anchor}")).to_be_visible()
    _no_overflow(page, width)
    page.screenshot(path=str(artifacts / f"wb-guide-{width}.png"), full_page=True)
    # Swagger UI from local assets (the page fixture fails the test on any other host)
    page.goto(f"{srv.url}/api/docs")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible(timeout=30_000)
    page.screenshot(path=str(artifacts / f"wb-apidocs-{width}.png"))
    # a page that does not exist: an HTML page for people
    resp = page.goto(f"{srv.url}/ui/no-such-page")
    assert resp.status == 404
    expect(page.locator("h1")).to_have_text("Page not found")
    expect(page.locator("a", has_text="Start a new query")).to_be_visible()
    _no_overflow(page, width)
    page.screenshot(path=str(artifacts / f"wb-404-{width}.png"), full_page=True)
    page.goto(f"{srv.url}/ui/#/nowhere")
    expect(page.locator("h1")).to_have_text("Page not found")


@pytest.mark.parametrize("width", [390], indirect=True)
def test_query_page_fits_a_phone(wb_server, page, width, artifacts):
    srv, _ = wb_server
    page.goto(f"{srv.url}/ui/")
    expect(page.locator("#query-form")).to_be_visible()
    _no_overflow(page, width)
    page.screenshot(path=str(artifacts / "wb-query-390.png"), full_page=True)


@both_widths
def test_job_page_cancels_a_running_job(wb_server, job, page, width, artifacts):
    """The job page of a running job offers Cancel, which POSTs /cancel and then shows the outcome.

    Jobs on the test store finish in milliseconds, so the job's status is served as "running"
    by the test (route interception) until the UI has asked to cancel it; the cancel itself and
    its effect on a job are tested against the real server in tests/api/test_workbench.py."""
    srv, _ = wb_server
    status = httpx.get(f"{srv.url}/api/v1/jobs/{job}").json()
    state = {"cancelled": 0}

    def job_route(route):
        if route.request.method == "POST" and route.request.url.endswith("/cancel"):
            state["cancelled"] += 1
            body = {**status, "status": "failed", "error": "cancelled by the user"}
        elif state["cancelled"]:
            body = {**status, "status": "failed", "error": "cancelled by the user"}
        else:
            body = {**status, "status": "running", "progress": 0.4}
        route.fulfill(status=200, content_type="application/json", body=__import__("json").dumps(body))

    page.route(re.compile(rf".*/api/v1/jobs/{job}(/cancel)?$"), job_route)
    page.goto(f"{srv.url}/ui/#/jobs/{job}")
    expect(page.locator(".status")).to_have_text("running")
    expect(page.locator(".progress div")).to_have_attribute("style", re.compile("width: ?40%"))
    _no_overflow(page, width)
    page.screenshot(path=str(artifacts / f"wb-job-running-{width}.png"), full_page=True)
    page.click("#job-cancel")
    expect(page.locator(".status")).to_have_text("failed")
    expect(page.locator("main")).to_contain_text("cancelled by the user")
    expect(page.locator("#job-rerun")).to_be_visible()
    assert state["cancelled"] == 1
    assert not page.js_errors, page.js_errors
