"""The web UI in a real browser (headless chromium): query, results table, heatmap, running
sum, download, detail pages and job history. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("playwright", reason="browser tests need playwright (test extra)")
from playwright.sync_api import expect  # noqa: E402


def test_query_to_results_heatmap_running_sum_and_download(ui_server, page, artifacts):
    srv, programs = ui_server
    page.goto(f"{srv.url}/ui/")
    expect(page.locator("#store-info")).to_contain_text("90 signatures")
    page.fill("input[name=name]", "programA")
    up = programs["A_up"][:25] + ["GENE_12"]  # a mistyped symbol: the UI suggests GENE12 (from the table)
    page.fill("textarea[name=up]", "\n".join(up))
    page.fill("textarea[name=down]", " ".join(programs["A_dn"][:25]))
    expect(page.locator("[data-count=up]")).to_have_text("(26)")
    page.click("#btn-validate")
    expect(page.locator(".vq")).to_contain_text("ready")
    expect(page.locator(".unknown")).to_contain_text("GENE_12")
    page.locator("button.suggest", has_text="GENE12").first.click()
    expect(page.locator(".unknown")).to_have_count(0)
    page.screenshot(path=str(artifacts / "ui-query.png"), full_page=True)

    page.click("#btn-run")
    expect(page).to_have_url(re.compile(r"#/results/[0-9a-f]{32}"), timeout=60_000)
    table = page.locator("table.results[data-level=pert_summary]")
    expect(table).to_be_visible(timeout=30_000)
    first_ids = table.locator("tbody tr td:first-child").all_inner_texts()[:4]
    assert set(first_ids) == {"BRD-000", "BRD-001", "BRD-002", "BRD-003"}
    expect(page.locator("#heatmap .main-svg").first).to_be_visible(timeout=30_000)
    expect(page.locator("#heatmap g.hm")).to_have_count(1)

    # sort by NCS ascending (click twice), the strongest reversers come first
    page.locator("th", has_text="NCS").click()
    expect(page.locator("th.active")).to_contain_text("NCS")
    page.locator("th", has_text="NCS").click()
    expect(page.locator("th.active")).to_contain_text("▲")
    # filter
    page.fill("#flt-text", "compound1")
    expect(page.locator("table.results tbody tr")).to_have_count(3)
    page.fill("#flt-text", "")
    expect(page.locator("table.results tbody tr")).to_have_count(12)  # controls (DMSO) are hidden by default (issue 17)

    # signatures tab -> running sum plot
    page.locator("button.tab", has_text="Signatures").click()
    sig_table = page.locator("table.results[data-level=sig]")
    expect(sig_table).to_be_visible()
    sig_table.locator("tbody tr").first.locator("td").nth(2).click()
    expect(page.locator("#running-sum .main-svg").first).to_be_visible(timeout=30_000)
    expect(page.locator("#rs-hint")).to_contain_text("ES up")
    page.screenshot(path=str(artifacts / "ui-results.png"), full_page=True)

    # download the perturbagen table
    page.select_option("#dl-select", "pert_summary.tsv")
    with page.expect_download() as info:
        page.click("#dl-button")
    download = info.value
    target = artifacts / "ui-download-pert_summary.tsv"
    download.save_as(str(target))
    text = target.read_text()
    assert text.splitlines()[0].split("\t")[:2] == ["query", "id"] and "BRD-000" in text
    assert not page.js_errors, page.js_errors


def test_detail_pages_and_job_history(ui_server, page, artifacts):
    srv, _ = ui_server
    page.goto(f"{srv.url}/ui/#/pert/BRD-002")
    expect(page.locator("h1")).to_contain_text("compound2")
    expect(page.locator("main")).to_contain_text("PCL_A")
    page.locator("a", has_text="CP_MCF7:BRD-002:10").click()
    expect(page.locator("h1")).to_contain_text("Signature CP_MCF7:BRD-002:10")
    page.goto(f"{srv.url}/ui/#/jobs")
    expect(page.locator("h1")).to_have_text("Job history")
    expect(page.locator("table.results tbody tr").first).to_be_visible()
    page.screenshot(path=str(artifacts / "ui-jobs.png"), full_page=True)
    page.goto(f"{srv.url}/ui/#/browse")
    page.fill("#browse-q", "compound1")
    expect(page.locator("table.results tbody tr")).to_have_count(3)
    assert not page.js_errors, page.js_errors


def test_invalid_query_shows_a_clear_message(ui_server, page):
    srv, _ = ui_server
    page.goto(f"{srv.url}/ui/")
    page.fill("textarea[name=up]", "NOTAGENE1 NOTAGENE2")
    page.click("#btn-run")
    expect(page.locator("#message")).to_contain_text("no up gene is in feature space")
    expect(page.locator(".vq.bad")).to_be_visible()


def test_example_button_runs_a_signature_query(ui_server, page):
    srv, _ = ui_server
    page.goto(f"{srv.url}/ui/")
    page.click("#btn-example")
    expect(page.locator("textarea[name=sig_ids]")).not_to_have_value("")
    page.click("#btn-run")
    expect(page.locator("table.results[data-level=pert_summary]")).to_be_visible(timeout=60_000)
    # the example is a program-A compound's signature: program-A compounds connect most strongly
    expect(page.locator("table.results tbody tr").first).to_be_visible()
    first = page.locator("table.results tbody tr td:first-child").all_inner_texts()[:2]
    assert set(first) <= {"BRD-000", "BRD-001", "BRD-002", "BRD-003"}, first
    assert not page.js_errors, page.js_errors
