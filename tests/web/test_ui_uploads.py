"""Regression tests of issue 12 in the browser: up/down uploads stay on their sides, earlier
uploads never ride along with a changed form, the form shows exactly what it submits, unpairable
uploads are refused, and the results page states what the result used (notes banner).

Screenshots (1440 and 390 px wide) go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

pytest.importorskip("playwright", reason="browser tests need playwright (test extra)")
from playwright.sync_api import expect  # noqa: E402

from opencmap.core.genesets import GeneSet  # noqa: E402
from opencmap.io import write_gmt  # noqa: E402
from opencmap.query.genesets import queries_from_gmt  # noqa: E402

A_CPDS = {"BRD-000", "BRD-001", "BRD-002", "BRD-003"}

expect.set_options(timeout=15_000)  # uploads are parsed by the server; CI's two cores are shared by two workers


def _gmts(tmp_path, programs, up_suffix="_UP", dn_suffix="_DN"):
    """An up GMT and a down GMT of three queries: mimic A, mimic B, reverse A."""
    sets = {
        "progA": (programs["A_up"][:25], programs["A_dn"][:25]),
        "progB": (programs["B_up"][:25], programs["B_dn"][:22]),
        "revA": (programs["A_dn"][:20], programs["A_up"][:25]),
    }
    up, dn = tmp_path / "query_up.gmt", tmp_path / "query_dn.gmt"
    write_gmt([GeneSet(n + up_suffix, "", tuple(u)) for n, (u, _) in sets.items()], up)
    write_gmt([GeneSet(n + dn_suffix, "", tuple(d)) for n, (_, d) in reversed(sets.items())], dn)  # other order
    return up, dn


def _preview(page) -> list[tuple[str, int, int]]:
    rows = page.locator("#preview-table tbody tr")
    out = []
    for i in range(rows.count()):
        cells = rows.nth(i).locator("td").all_inner_texts()
        out.append((cells[0], int(cells[1]), int(cells[2])))
    return out


def _wait_done(client: httpx.Client, job_id: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = client.get(f"/jobs/{job_id}").json()["status"]
        if status == "done":
            return
        assert status in ("queued", "running"), status
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish")


def _sig_scores(client: httpx.Client, job_id: str, query: str) -> dict[str, float]:
    page = client.get(f"/jobs/{job_id}/results", params={"level": "sig", "query": query, "limit": 1000, "sort": "wtcs"}).json()
    return {row["sig_id"]: row["wtcs"] for row in page["items"]}


@pytest.mark.parametrize(("up_suffix", "dn_suffix"), [("_UP", "_DN"), ("", "")], ids=["suffixed", "same-names"])
def test_gmt_uploads_stay_on_their_sides(ui_server, page, artifacts, tmp_path, up_suffix, dn_suffix):
    """Issue 12.1: an up GMT in Up and a down GMT in Down gave down genes -> up set and flipped signs."""
    srv, programs = ui_server
    up, dn = _gmts(tmp_path, programs, up_suffix, dn_suffix)
    expected = [{"name": q.name, "up": list(q.up), "down": list(q.down)} for q in queries_from_gmt(up, dn)]
    page.goto(f"{srv.url}/ui/", wait_until="networkidle")
    page.set_input_files("input[name=up-file]", str(up))
    expect(page.locator("#batch-note")).to_contain_text("3 queries paired from query_up.gmt (up)")
    # the up file alone: up sets, nothing on the down side
    assert _preview(page) == [("progA", 25, 0), ("progB", 25, 0), ("revA", 20, 0)]
    page.set_input_files("input[name=down-file]", str(dn))
    expect(page.locator("#batch-note")).to_contain_text("query_up.gmt (up) + query_dn.gmt (down)")
    assert _preview(page) == [("progA", 25, 25), ("progB", 25, 22), ("revA", 20, 25)]
    assert page.locator("textarea[name=up]").input_value() == ""  # the form shows the uploads, not a stale set
    if up_suffix:
        for width, name in ((1440, "ui-upload-preview.png"), (390, "ui-upload-preview-390.png")):
            page.set_viewport_size({"width": width, "height": 900})
            page.screenshot(path=str(artifacts / name), full_page=True)
        page.set_viewport_size({"width": 1440, "height": 1000})

    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/api/v1/jobs")) as posted:
        page.click("#btn-run")
    sent = json.loads(posted.value.post_data)
    assert sent["queries"] == expected and sent["sig_ids"] == []
    expect(page).to_have_url(re.compile(r"#/results/[0-9a-f]{32}"), timeout=90_000)
    job_id = page.url.rsplit("/", 1)[-1].split("?")[0]
    expect(page.locator("table.results[data-level=pert_summary] tbody tr").first).to_be_visible(timeout=30_000)

    with httpx.Client(base_url=f"{srv.url}/api/v1", timeout=60) as client:
        # signs: progA mimics the A compounds, revA reverses them
        for query, sign in (("progA", 1), ("revA", -1)):
            top = client.get(f"/jobs/{job_id}/results", params={"query": query, "sort": "tau", "order": "asc" if sign < 0 else "desc", "limit": 4}).json()
            assert {r["id"] for r in top["items"]} == A_CPDS, (query, top["items"])
            assert all(sign * r["tau"] > 0 for r in top["items"])
        # the same queries through the API (parsed by the library, as the CLI does) give the same scores
        ref = client.post("/jobs", json={"queries": expected}).json()["id"]
        _wait_done(client, ref)
        for q in expected:
            got, want = _sig_scores(client, job_id, q["name"]), _sig_scores(client, ref, q["name"])
            assert got == want and len(got) == 90
    assert not page.js_errors, page.js_errors


def test_form_changes_clear_uploads_and_example_submits_only_the_example(ui_server, page, tmp_path):
    """Issue 12.1: after a GMT upload, "Try an example" + "Run query" also sent the three GMT queries."""
    srv, programs = ui_server
    up, dn = _gmts(tmp_path, programs)
    page.goto(f"{srv.url}/ui/", wait_until="networkidle")
    page.set_input_files("input[name=up-file]", str(up))
    page.set_input_files("input[name=down-file]", str(dn))
    expect(page.locator("#preview-table tbody tr")).to_have_count(3)
    page.click("#btn-example")
    expect(page.locator("textarea[name=sig_ids]")).not_to_have_value("")
    sig_id = page.locator("textarea[name=sig_ids]").input_value()
    expect(page.locator("#preview-table tbody tr")).to_have_count(1)
    assert _preview(page) == [(sig_id, 50, 50)]
    assert page.locator("input[name=up-file]").input_value() == "" == page.locator("input[name=down-file]").input_value()
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/api/v1/queries")) as posted:
        page.click("#btn-run")
    sent = json.loads(posted.value.post_data)
    assert sent["queries"] == [] and sent["sig_ids"] == [sig_id]
    expect(page.locator("table.results[data-level=pert_summary]")).to_be_visible(timeout=60_000)
    expect(page.locator("select#sel-query")).to_have_count(0)  # one query only

    # typing genes after an upload drops the upload: only the typed query is shown and sent
    page.goto(f"{srv.url}/ui/", wait_until="networkidle")
    page.set_input_files("input[name=up-file]", str(up))
    expect(page.locator("#preview-table tbody tr")).to_have_count(3)
    page.fill("input[name=name]", "typed")
    page.fill("textarea[name=up]", "\n".join(programs["B_up"][:12]))
    expect(page.locator("#batch-note")).to_contain_text("Uploads cleared")
    assert _preview(page) == [("typed", 12, 0)]
    assert page.locator("input[name=up-file]").input_value() == ""
    with page.expect_request(lambda r: r.method == "POST" and "/api/v1/queries" in r.url) as posted:
        page.click("#btn-validate")
    assert [q["name"] for q in json.loads(posted.value.post_data)["queries"]] == ["typed"]
    assert not page.js_errors, page.js_errors


def test_grp_uploads_fill_their_own_sides(ui_server, page, tmp_path):
    srv, programs = ui_server
    (tmp_path / "up.grp").write_text("\n".join(programs["A_up"][:15]) + "\n")
    (tmp_path / "dn.grp").write_text("# down genes\n" + "\n".join(programs["A_dn"][:11]) + "\n")
    page.goto(f"{srv.url}/ui/", wait_until="networkidle")
    page.fill("input[name=name]", "grpq")
    page.set_input_files("input[name=down-file]", str(tmp_path / "dn.grp"))
    expect(page.locator("textarea[name=down]")).to_have_value("\n".join(programs["A_dn"][:11]))
    expect(page.locator("textarea[name=up]")).to_have_value("")
    page.set_input_files("input[name=up-file]", str(tmp_path / "up.grp"))
    expect(page.locator("textarea[name=up]")).to_have_value("\n".join(programs["A_up"][:15]))
    assert _preview(page) == [("grpq", 15, 11)]
    assert not page.js_errors, page.js_errors


@pytest.mark.parametrize(
    ("up_text", "dn_text", "message"),
    [
        ("A_UP\t\tG1\tG2\nB_UP\t\tG3\n", "A_DN\t\tG4\nC_DN\t\tG5\n", "have no down partner: B_UP; 1 set(s) of down file 'dn.gmt' have no up partner: C_DN"),
        ("A_DN\t\t1000\n", None, "set 'A_DN' is named as a down set"),  # the down file put in the Up box
        ("A_UP\t\t1000\nA_DN\t\t1001\n", None, "both name query 'A'"),
        ("\n", None, "has no gene sets"),
    ],
    ids=["unmatched-names", "swapped-files", "both-sides-in-one-file", "no-sets"],
)
def test_unpairable_upload_is_refused(ui_server, page, artifacts, tmp_path, up_text, dn_text, message):
    srv, _ = ui_server
    page.goto(f"{srv.url}/ui/", wait_until="networkidle")
    page.wait_for_load_state("networkidle")  # the form's handlers are attached once the app has started
    (tmp_path / "up.gmt").write_text(up_text)
    page.set_input_files("input[name=up-file]", str(tmp_path / "up.gmt"))
    if dn_text is not None:
        expect(page.locator("#batch-note")).to_contain_text("paired from up.gmt", timeout=15_000)
        (tmp_path / "dn.gmt").write_text(dn_text)
        page.set_input_files("input[name=down-file]", str(tmp_path / "dn.gmt"))
    expect(page.locator("#message")).to_contain_text("Upload refused", timeout=15_000)
    expect(page.locator("#message")).to_contain_text(message)
    expect(page.locator("#preview-table")).to_have_count(0)  # nothing left to submit
    assert page.locator("input[name=up-file]").input_value() == ""
    if message.startswith("have no down partner"):
        for width, name in ((1440, "ui-upload-refused.png"), (390, "ui-upload-refused-390.png")):
            page.set_viewport_size({"width": width, "height": 800})
            page.screenshot(path=str(artifacts / name), full_page=True)
    page.click("#btn-run")
    expect(page.locator("#message")).to_contain_text("no queries")
    assert not page.js_errors, page.js_errors


def test_results_banner_shows_unknown_genes_and_every_note(ui_server, page, artifacts):
    """Issue 12, "every result states what it used": the results page banner."""
    srv, programs = ui_server
    page.goto(f"{srv.url}/ui/", wait_until="networkidle")
    page.fill("input[name=name]", "withunknown")
    page.fill("textarea[name=up]", "\n".join(programs["A_up"][:20] + ["NOTAGENEQQQ"]))
    page.fill("textarea[name=down]", "\n".join(programs["A_dn"][:20]))
    page.click("#btn-run")
    expect(page).to_have_url(re.compile(r"#/results/[0-9a-f]{32}"), timeout=60_000)
    banner = page.locator("#used-banner")
    expect(banner).to_be_visible(timeout=30_000)
    expect(banner.locator("li.warn", has_text="unknown").last).to_contain_text("NOTAGENEQQQ")
    expect(banner.locator("li.info", has_text="up genes used")).to_contain_text("20")
    job_id = page.url.rsplit("/", 1)[-1].split("?")[0]

    # notes and fields the API adds (mapped genes, one-sided tail, FDR method) render without UI changes
    extra_notes = ["query withunknown: one-sided (up only); tau left empty: the store has no up-tail background",
                   "fdr_q: cmapM computeFDRGsea; null scores: 2 positive, 30 negative; q = 1 says nothing on the positive side"]

    def patch(route):
        body = route.fetch().json()
        body["notes"] = body["notes"] + extra_notes
        body["describe"]["notes"] = body["describe"]["notes"] + extra_notes  # the engine's own notes
        body["params"] = {**body["params"], "fdr_method": "cmapm", "es_tail": "up"}
        body["queries"][0]["mapped"] = {"AARS1": "AARS", "GARS1": "GARS"}
        body["queries"][0]["ambiguous"] = {"SEPT2": ["4735", "10001"]}
        body["queries"][0]["down_side"] = {"dropped": ["1999"], "n_null": 3}  # a nested report
        route.fulfill(json=body)

    page.route(re.compile(rf".*/api/v1/jobs/{job_id}$"), patch)
    page.reload()
    expect(banner).to_be_visible(timeout=30_000)
    for note in extra_notes:
        expect(banner.locator("li.warn", has_text=note)).to_have_count(1)
    expect(banner.locator("li", has_text="mapped")).to_contain_text("AARS1 → AARS")
    expect(banner.locator("li.warn", has_text="ambiguous")).to_contain_text("SEPT2 → 4735 or 10001")
    expect(banner.locator("li.warn", has_text="down side dropped")).to_contain_text("1999")
    expect(banner.locator("li.warn", has_text="down side dropped")).to_contain_text("down side n null 3")
    expect(banner.locator(".chip", has_text="fdr method: cmapm")).to_be_visible()
    expect(banner.locator(".chip", has_text="es tail: up")).to_be_visible()
    for width, name in ((1440, "ui-results-banner.png"), (390, "ui-results-banner-390.png")):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(artifacts / name), full_page=False)
    page.unroute(re.compile(rf".*/api/v1/jobs/{job_id}$"))
    assert not page.js_errors, page.js_errors


def test_no_banner_without_notes(ui_server, page):
    srv, programs = ui_server
    def no_notes(route):
        body = route.fetch().json()
        body["notes"], body["describe"]["notes"] = [], []  # the banner shows the engine's notes (describe.notes)
        route.fulfill(json=body)

    page.route(re.compile(r".*/api/v1/jobs/[0-9a-f]{32}$"), no_notes)
    page.goto(f"{srv.url}/ui/", wait_until="networkidle")
    page.fill("textarea[name=up]", "\n".join(programs["B_up"][:20]))
    page.fill("textarea[name=down]", "\n".join(programs["B_dn"][:20]))
    page.click("#btn-run")
    expect(page.locator("table.results[data-level=pert_summary] tbody tr").first).to_be_visible(timeout=60_000)
    expect(page.locator("#used-banner")).to_have_count(0)
    assert not page.js_errors, page.js_errors
