"""Time to first paint and to an interactive results page of the web UI (Debian chromium + Playwright).

Starts ``opencmap serve`` on 127.0.0.1 for ``--store`` (e.g. the demo store ``opencmap-demo/store``
built by ``opencmap demo``; PCLs beside it are picked up like the server does), runs one
synchronous query (the UI's "Try an example": the first compound signature of the store as the
query), then opens ``/ui/#/results/<job>`` ``--runs`` times in a fresh browser context at 1440 and
390 px and reports, from the page's own performance timeline (ms since navigation start):

* first paint and first contentful paint (``performance.getEntriesByType("paint")``);
* DOMContentLoaded;
* results table usable: its rows shown and the view no longer dimmed as loading;
* interactive: the results table, the heatmap (plotly drawn) and no request pending (the loading
  bar gone); both checked on every animation frame;
* the page width (``document.scrollingElement.scrollWidth``) at that moment.

Medians over the runs are printed. Nothing is fetched from other hosts (no CDN). ~1 min on the demo store.

    .venv/bin/python benchmarks/bench_ui.py --store opencmap-demo/store
    .venv/bin/python benchmarks/bench_ui.py --store big/store --screenshots shots/   # + results-1440.png, results-390.png
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

TABLE = """() => {
  const ok = document.querySelector("table.results tbody tr") && !document.querySelector("main.stale");
  return ok ? performance.now() : false;
}"""
READY = """() => {
  const ok = document.querySelector("table.results tbody tr") && document.querySelector("#heatmap[data-rendered='1']")
    && !document.body.classList.contains("loading") && !document.querySelector("main.stale");
  return ok ? performance.now() : false;
}"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True, type=Path)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--chromium", default=os.environ.get("OPENCMAP_CHROMIUM", "/usr/bin/chromium"))
    ap.add_argument("--fdr-method", default=None, choices=("random_query_pooled", "random_query", "cmap"),
                    help="FDR of the query (cmap: no random-query null to build first on a big store)")
    ap.add_argument("--screenshots", type=Path, default=None, help="save the interactive results page as PNGs here")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    port = _port()
    url = f"http://127.0.0.1:{port}"
    tmp = Path(tempfile.mkdtemp(prefix="opencmap-bench-ui-"))
    cmd = [sys.executable, "-c", "from opencmap.cli import main; main()", "serve", "--store", str(args.store),
           "--db", str(tmp / "jobs.sqlite"), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"server did not start:\n{(tmp / 'server.log').read_text()}")
            time.sleep(0.3)
        with httpx.Client(base_url=f"{url}/api/v1", timeout=300) as c:
            info = c.get("/info").json()
            sig = c.get("/signatures", params={"pert_type": "trt_cp", "limit": 1}).json()["items"][0]["sig_id"]
            t0 = time.perf_counter()
            r = c.post("/queries", json={"sig_ids": [sig], **({"fdr_method": args.fdr_method} if args.fdr_method else {})})
            api_s = time.perf_counter() - t0
            r.raise_for_status()
            job = r.json()["job"]["id"]
        print(f"store {args.store}: {info['store']['n_signatures']} signatures, {info['n_perturbagens']} perturbagens, "
              f"{info['n_pcls']} PCLs; sync query (signature {sig}) through the API: {api_s * 1000:.0f} ms")  # fmt: skip
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True,
                                        args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])  # fmt: skip
            for width in (1440, 390):
                rows = []
                for _ in range(args.runs):
                    ctx = browser.new_context(viewport={"width": width, "height": 1000 if width > 600 else 844})
                    page = ctx.new_page()
                    outside: list[str] = []
                    page.on("request", lambda req, o=outside: o.append(req.url) if not req.url.startswith((url, "data:", "blob:")) else None)
                    page.goto(f"{url}/ui/#/results/{job}")
                    table = page.wait_for_function(TABLE, polling="raf", timeout=120_000).json_value()
                    ready = page.wait_for_function(READY, polling="raf", timeout=120_000).json_value()
                    paint = page.evaluate("() => Object.fromEntries(performance.getEntriesByType('paint').map((e) => [e.name, e.startTime]))")
                    dcl = page.evaluate("() => performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
                    sw = page.evaluate("document.scrollingElement.scrollWidth")
                    rows.append((paint.get("first-paint", float("nan")), paint.get("first-contentful-paint", float("nan")), dcl, ready, sw, table))
                    assert not outside, outside
                    if args.screenshots is not None and len(rows) == 1:
                        args.screenshots.mkdir(parents=True, exist_ok=True)
                        page.screenshot(path=str(args.screenshots / f"results-{width}.png"), full_page=True)
                    ctx.close()
                med = [statistics.median(x) for x in zip(*rows, strict=True)]
                print(f"{width:>5} px: first paint {med[0]:.0f} ms, first contentful paint {med[1]:.0f} ms, "
                      f"DOMContentLoaded {med[2]:.0f} ms, results table usable {med[5]:.0f} ms, "
                      f"table + heatmap drawn {med[3]:.0f} ms "
                      f"(median of {args.runs}; runs: {', '.join(f'{r[3]:.0f}' for r in rows)} ms); page width {med[4]:.0f} px")  # fmt: skip
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
