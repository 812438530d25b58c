// opencmap web UI: a small single-page app that talks only to the REST API (/api/v1).
"use strict";

const API = window.OPENCMAP_API || "/api/v1";
const view = document.getElementById("view");
let INFO = null;

// ------------------------------------------------------------------ helpers
function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
function fmt(v, digits = 3) {
  if (v === null || v === undefined || v === "" || v === "-666" || v === -666) return "";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(digits);
  return String(v);
}
function token() { return localStorage.getItem("opencmap-token") || ""; }
function headers(extra = {}) {
  const h = { ...extra };
  if (token()) h["Authorization"] = "Bearer " + token();
  return h;
}
function showMessage(text, kind = "error") {
  const box = document.getElementById("message");
  if (!text) { box.className = "message hidden"; box.textContent = ""; return; }
  box.className = "message " + kind;
  box.textContent = text;
}
async function api(path, options = {}) {
  const opts = { ...options, headers: headers(options.headers || {}) };
  const res = await fetch(API + path, opts);
  if (res.status === 401) {
    document.getElementById("token-bar").classList.remove("hidden");
  }
  let body = null;
  const type = res.headers.get("content-type") || "";
  if (type.includes("json")) body = await res.json();
  if (!res.ok) {
    const msg = body && body.error ? body.error.message : `${res.status} ${res.statusText}`;
    const err = new Error(msg);
    err.status = res.status;
    err.body = body;
    throw err;
  }
  return body;
}
function postJSON(path, data) {
  return api(path, { method: "POST", body: JSON.stringify(data), headers: { "Content-Type": "application/json" } });
}
function splitGenes(text) {
  return text.split(/[\s,;]+/).map((t) => t.trim()).filter((t) => t && !t.startsWith("#"));
}
function params() {
  const hash = location.hash.slice(1) || "/";
  const [path, query] = hash.split("?");
  return { path, query: new URLSearchParams(query || "") };
}
function setHash(path, q) {
  const s = q && [...q.keys()].length ? "?" + q.toString() : "";
  location.hash = "#" + path + s;
}
function el(html) {
  const t = document.createElement("template");
  t.innerHTML = html.trim();
  return t.content.firstElementChild;
}
function navActive(name) {
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === name));
}

// ------------------------------------------------------------------ query page
async function renderQuery() {
  navActive("query");
  view.replaceChildren(document.getElementById("tpl-query").content.cloneNode(true));
  const form = document.getElementById("query-form");
  const info = await loadInfo();
  const spaceSel = form.elements["space"];
  for (const [name, n] of Object.entries(info.spaces)) {
    spaceSel.append(new Option(`${name} (${n} genes)`, name, name === info.default_space, name === info.default_space));
  }
  for (const m of info.metrics) form.elements["metric"].append(new Option(m, m));
  const draft = JSON.parse(sessionStorage.getItem("opencmap-draft") || "null");
  if (draft) for (const k of ["name", "up", "down"]) if (draft[k]) form.elements[k].value = draft[k];
  const counts = () => {
    for (const side of ["up", "down"]) {
      const n = splitGenes(form.elements[side].value).length;
      form.querySelector(`[data-count=${side}]`).textContent = n ? `(${n})` : "";
    }
    sessionStorage.setItem("opencmap-draft", JSON.stringify({ name: form.elements.name.value, up: form.elements.up.value, down: form.elements.down.value }));
    renderPreview(form);
  };
  UPLOADED = null;
  for (const side of ["up", "down"]) form.elements[side].dataset.placeholder = form.elements[side].placeholder;
  form.addEventListener("input", (ev) => {
    // any change to what the query is made of drops earlier uploads: the form shows what is sent
    if (QUERY_FIELDS.includes(ev.target.name)) clearUploads(form, "the form changed");
    counts();
  });
  counts();
  for (const side of ["up", "down"]) {
    form.elements[`${side}-file`].addEventListener("change", () => uploadSets(form).then(counts));
  }
  document.getElementById("btn-validate").addEventListener("click", () => validate(form));
  document.getElementById("btn-example").addEventListener("click", async () => {
    const sigs = await api("/signatures?pert_type=trt_cp&limit=1");
    if (!sigs.items.length) return;
    clearUploads(form, "an example replaced the form");
    form.querySelector("details").open = true;
    form.elements.sig_ids.value = sigs.items[0].sig_id;
    form.elements.up.value = form.elements.down.value = "";
    counts();
    document.getElementById("batch-note").textContent =
      `Example: signature ${sigs.items[0].sig_id} (${sigs.items[0].pert_iname || sigs.items[0].pert_id}) as the query; press "Run query".`;
  });
  form.addEventListener("submit", (ev) => { ev.preventDefault(); submit(form); });
}

// fields whose edits change the queries (options such as the metric apply to every query and keep uploads)
const QUERY_FIELDS = ["name", "up", "down", "sig_ids"];
let UPLOADED = null; // queries paired by the server from GMT uploads (/genesets/queries)
let UPLOADING = null; // the pending pairing request, if any
let UPLOAD_SEQ = 0; // bumped by every upload and clear: an answer to an older upload is ignored

function clearUploads(form, why) {
  const had = UPLOADED !== null || ["up", "down"].some((s) => form.elements[`${s}-file`].files.length);
  UPLOAD_SEQ += 1;
  UPLOADED = null;
  for (const side of ["up", "down"]) {
    form.elements[`${side}-file`].value = "";
    form.elements[side].placeholder = form.elements[side].dataset.placeholder;
  }
  if (had) document.getElementById("batch-note").textContent = `Uploads cleared: ${why}.`;
}

// Up file -> up sets, Down file -> down sets, paired on the server exactly as `opencmap query --up --down`.
async function uploadSets(form) {
  const files = {};
  for (const side of ["up", "down"]) {
    const f = form.elements[`${side}-file`].files[0];
    if (f) files[side] = f;
  }
  UPLOADED = null;
  for (const side of ["up", "down"]) form.elements[side].placeholder = form.elements[side].dataset.placeholder;
  if (!Object.keys(files).length) return;
  const data = new FormData();
  for (const [side, f] of Object.entries(files)) data.append(side, f, f.name);
  const name = form.elements.name.value.trim();
  if (/^[A-Za-z0-9_.:+\- ]{1,100}$/.test(name)) data.append("name", name);
  const note = document.getElementById("batch-note");
  const what = Object.entries(files).map(([side, f]) => `${f.name} (${side})`).join(" + ");
  const btn = document.getElementById("btn-run");
  btn.disabled = true;
  const seq = ++UPLOAD_SEQ;
  const pending = api("/genesets/queries", { method: "POST", body: data });
  UPLOADING = pending;
  try {
    const res = await pending;
    if (seq !== UPLOAD_SEQ) return; // the form changed meanwhile
    showMessage("");
    if (res.format === "grp") {
      // one query: its genes go to the text boxes of their sides, where they can be edited
      for (const side of Object.keys(files)) form.elements[side].value = res.queries[0][side].join("\n");
      note.textContent = `Read ${what}.`;
    } else {
      UPLOADED = res;
      form.elements.up.value = form.elements.down.value = "";
      for (const side of ["up", "down"]) {
        form.elements[side].placeholder = res.files[side] ? `${side} sets of ${res.files[side]}: listed below` : `no ${side} sets`;
      }
      note.textContent = `${res.queries.length} ${res.queries.length === 1 ? "query" : "queries"} paired from ${what}` +
        (res.notes.length ? ` (${res.notes.join("; ")})` : "") + ". Editing the form clears the upload.";
    }
  } catch (err) {
    if (seq !== UPLOAD_SEQ) return;
    clearUploads(form, "refused");
    note.textContent = "";
    showMessage(`Upload refused (${what}): ${err.message}`);
  } finally {
    if (UPLOADING === pending) {
      UPLOADING = null;
      btn.disabled = false;
    }
  }
}

function requestFrom(form) {
  const f = form.elements;
  const req = {
    metric: f.metric.value,
    space: f.space.value || null,
    min_genes: Number(f.min_genes.value) || 10,
    max_genes: Number(f.max_genes.value) || 150,
    tau_method: f.tau_method.value,
    queries: [],
    sig_ids: splitGenes(f.sig_ids.value),
    n_genes: 50,
  };
  if (UPLOADED) req.queries = UPLOADED.queries.map((q) => ({ name: q.name, up: [...q.up], down: [...q.down] }));
  else {
    const up = splitGenes(f.up.value), down = splitGenes(f.down.value);
    if (up.length || down.length) req.queries.push({ name: f.name.value.trim() || "query", up, down });
  }
  return req;
}

// What "Run query" will submit, built by the same requestFrom() that submit() sends.
function renderPreview(form) {
  const box = document.getElementById("preview");
  if (!box) return;
  const req = requestFrom(form);
  const rows = req.queries.map((q) => ({ name: q.name, up: q.up.length, down: q.down.length, from: UPLOADED ? "upload" : "form" }))
    .concat(req.sig_ids.map((id) => ({ name: id, up: req.n_genes, down: req.n_genes, from: "signature (top/bottom genes)" })));
  if (!rows.length) { box.replaceChildren(); return; }
  const one = (r) => `<tr><td>${esc(r.name)}</td><td class="num">${r.up}</td><td class="num">${r.down}</td><td class="muted">${esc(r.from)}</td></tr>`;
  const oneSided = rows.filter((r) => !r.up || !r.down).length;
  box.replaceChildren(el(`<div class="preview"><b>"Run query" submits ${rows.length} ${rows.length === 1 ? "query" : "queries"}:</b>
    <div class="table-wrap"><table class="results" id="preview-table"><thead><tr><th>query</th><th class="num">up genes</th><th class="num">down genes</th><th>from</th></tr></thead>
    <tbody>${rows.map(one).join("")}</tbody></table></div>
    ${oneSided ? `<div class="warn-line">${oneSided} of them ${oneSided === 1 ? "has" : "have"} genes on one side only.</div>` : ""}</div>`));
}

async function validate(form, keepMessage = false) {
  const box = document.getElementById("validation");
  const req = requestFrom(form);
  try {
    const rep = await postJSON("/queries/validate", req);
    if (!keepMessage) showMessage("");
    box.replaceChildren(validationView(rep, form));
    return rep.queries.every((q) => q.valid);
  } catch (err) {
    showMessage(err.message);
    return false;
  }
}

function validationView(rep, form) {
  const wrap = el(`<div class="validation"></div>`);
  for (const q of rep.queries) {
    const item = el(`<div class="vq ${q.valid ? "ok" : "bad"}">
      <b>${esc(q.name)}</b>: ${q.valid ? "ready" : "not usable"} — ${q.up.length} up and ${q.down.length} down genes in feature space <i>${esc(rep.space)}</i>.
      ${q.message ? `<div class="why">${esc(q.message)}</div>` : ""}
      ${q.dropped.length ? `<div>Outside the feature space (ignored): ${q.dropped.map(esc).join(", ")}</div>` : ""}
    </div>`);
    // suggestions come from the server's gene tables only (never by string similarity); an
    // ambiguous name offers each of its candidate genes, and the user picks one
    const tokenLine = (cls, label, tokens) => {
      const u = el(`<div class="${cls}">${label}</div>`);
      for (const g of tokens) {
        const sug = (q.suggestions || {})[g] || [];
        const why = (q.reasons || {})[g];
        const span = el(`<span class="tok"${why ? ` title="${esc(why)}"` : ""}>${esc(g)}</span>`);
        for (const s of sug) {
          const b = el(`<button type="button" class="suggest" title="replace ${esc(g)} by ${esc(s)}">→ ${esc(s)}</button>`);
          b.addEventListener("click", () => { replaceToken(form, g, s); validate(form); });
          span.append(b);
        }
        u.append(span, " ");
      }
      return u;
    };
    const ambiguous = Object.values(q.ambiguous || {}).flatMap((d) => Object.keys(d));
    if (ambiguous.length) item.append(tokenLine("ambiguous", "Ambiguous, not used (names of several genes): ", ambiguous));
    if (q.unknown.length) item.append(tokenLine("unknown", "Unknown genes: ", q.unknown));
    const mapped = Object.values(q.mapped || {}).flatMap((d) => Object.entries(d))
      .filter(([, m]) => m[2] !== "symbol" && m[2] !== "store symbol");
    if (mapped.length) {
      item.append(el(`<div class="mapped">Mapped: ${mapped.map(([t, m]) => `${esc(t)} → ${esc(m[1])} (${esc(m[2])})`).join(", ")}</div>`));
    }
    wrap.append(item);
  }
  return wrap;
}

function replaceToken(form, old, repl) {
  for (const side of ["up", "down"]) {
    const ta = form.elements[side];
    ta.value = ta.value.split(/\n/).map((line) =>
      line.split(/([\s,;]+)/).map((t) => (t === old ? repl : t)).join("")).join("\n");
  }
  form.dispatchEvent(new Event("input"));
}

async function submit(form) {
  if (UPLOADING) await UPLOADING.catch(() => {});
  const req = requestFrom(form);
  renderPreview(form);
  const btn = document.getElementById("btn-run");
  btn.disabled = true;
  btn.textContent = "Running…";
  try {
    const n = req.queries.length + req.sig_ids.length;
    const limit = (INFO && INFO.limits.max_sync_queries) || 1;
    if (n > limit) {
      const job = await postJSON("/jobs", req);
      setHash(`/jobs/${job.id}`);
    } else {
      const res = await postJSON("/queries", req);
      setHash(`/results/${res.job.id}`);
    }
    showMessage("");
  } catch (err) {
    showMessage(err.message);
    if (err.status === 422) validate(form, true);
  } finally {
    btn.disabled = false;
    btn.textContent = "Run query";
  }
}

// ------------------------------------------------------------------ results page
// The "what this result used" banner: every note of the job, and per query every reported gene
// list / mapping / value (so fields the API adds later appear without UI changes).
const GENE_LISTS = { up_genes: "up genes used", down_genes: "down genes used" };
const WARN_FIELD = /unknown|dropped|ambiguous|missing|unmapped|skipped|excluded|invalid|conflict|flag/i;

function describeField(key, value) {
  const name = GENE_LISTS[key] || key.replace(/_/g, " ");
  const warn = WARN_FIELD.test(key);
  const shown = (items) => items.slice(0, 12).map((x) => esc(typeof x === "object" ? JSON.stringify(x) : x)).join(", ") +
    (items.length > 12 ? ` … (+${items.length - 12})` : "");
  if (Array.isArray(value)) {
    if (!value.length) return null;
    const list = key in GENE_LISTS ? "" : `: ${shown(value)}`;
    return { warn, html: `<b>${esc(name)}</b> ${value.length}${list}` };
  }
  if (value && typeof value === "object") {
    const entries = Object.entries(value);
    const leaf = (v) => v === null || typeof v !== "object" || (Array.isArray(v) && v.every((x) => x === null || typeof x !== "object"));
    if (!entries.every(([k, v]) => leaf(v) && !WARN_FIELD.test(k))) {
      // a nested report (e.g. {up: {used: [...], unknown: [...]}}): one line per inner field
      const inner = entries.map(([k, v]) => describeField(`${key}_${k}`, v)).filter(Boolean);
      return inner.length ? { warn: inner.some((x) => x.warn), html: inner.map((x) => x.html).join("; ") } : null;
    }
    if (!entries.length) return null;
    const pairs = entries.map(([k, v]) => `${k} → ${Array.isArray(v) ? v.join(" or ") : typeof v === "object" ? JSON.stringify(v) : v}`);
    return { warn, html: `<b>${esc(name)}</b> ${entries.length}: ${shown(pairs)}` };
  }
  if (value === null || value === undefined || value === "") return null;
  return { warn: warn && value !== 0 && value !== false, html: `<b>${esc(name)}</b> ${esc(fmt(value))}` };
}

function usedBanner(job, qinfo) {
  // the engine's own notes (warnings); job.notes also renders the per-query fields shown below
  const notes = (job.describe && Array.isArray(job.describe.notes)) ? job.describe.notes : (job.notes || []);
  const items = [];
  for (const [key, value] of Object.entries(qinfo || {})) {
    if (key === "name" || key === "suggestions") continue;  // suggestions belong to the query form
    const item = describeField(key, value);
    if (item) items.push(item);
  }
  const queryWarnings = items.filter((x) => x.warn).length;
  if (!notes.length && !queryWarnings) return "";
  const params = Object.entries(job.params || {}).filter(([, v]) => v !== null && typeof v !== "object")
    .map(([k, v]) => `<span class="chip">${esc(k.replace(/_/g, " "))}: ${esc(fmt(v))}</span>`).join(" ");
  const others = job.queries.length > 1
    ? job.queries.filter((x) => x !== qinfo && Object.entries(x).some(([k, v]) => WARN_FIELD.test(k) && (Array.isArray(v) ? v.length : v && typeof v === "object" ? Object.keys(v).length : v))).length
    : 0;
  return `<div class="used-banner" id="used-banner" role="status">
    <div class="banner-title">What this result used${notes.length ? ` — ${notes.length} ${notes.length === 1 ? "note" : "notes"}` : ""}</div>
    ${notes.length ? `<ul class="banner-notes">${notes.map((n) => `<li class="warn">${esc(n)}</li>`).join("")}</ul>` : ""}
    <div class="banner-query">Query <b>${esc(qinfo.name)}</b>:
      <ul>${items.map((x) => `<li class="${x.warn ? "warn" : "info"}">${x.html}</li>`).join("")}</ul></div>
    ${others ? `<div class="warn-line">${others} other ${others === 1 ? "query has" : "queries have"} warnings of its own (unknown, dropped or flagged items); pick it under "Query" to see them.</div>` : ""}
    ${params ? `<div class="banner-params">${params}</div>` : ""}
  </div>`;
}

const LEVELS = {
  pert_summary: { label: "Perturbagens", cols: ["id", "pert_iname", "tau", "ncs", "moa", "pert_type", "n_cells"] },
  sig: { label: "Signatures", cols: ["sig_id", "pert_iname", "cell_id", "tau", "ncs", "fdr_q", "wtcs", "pert_idose", "moa"] },
  pert_cell: { label: "Perturbagen × cell", cols: ["pert_id", "pert_iname", "cell_id", "tau", "ncs", "moa"] },
  pcl_summary: { label: "PCLs", cols: ["id", "n_members", "tau", "ncs", "members"] },
};

async function renderResults(jobId, q) {
  navActive("");
  const job = await api(`/jobs/${jobId}`);
  if (job.status !== "done") return renderJob(jobId);
  const query = q.get("query") || job.queries[0].name;
  const level = q.get("level") || "pert_summary";
  const qinfo = job.queries.find((x) => x.name === query) || job.queries[0];
  const page = el(`<section>
    <div class="card">
      <h1>Results: ${esc(query)}</h1>
      <p class="muted">Metric ${esc(job.method)}, feature space ${esc(job.space)}, ${qinfo.up_genes.length} up and
        ${qinfo.down_genes.length} down genes used${qinfo.unknown.length ? `, ${qinfo.unknown.length} unknown ignored` : ""}.
        Positive τ: the perturbagen mimics your query; negative: it reverses it.</p>
      ${usedBanner(job, qinfo)}
      <div class="row">
        ${job.queries.length > 1 ? `<label>Query <select id="sel-query">${job.queries.map((x) => `<option ${x.name === query ? "selected" : ""}>${esc(x.name)}</option>`).join("")}</select></label>` : ""}
        <span class="grow"></span>
        <span id="downloads" class="downloads"></span>
      </div>
    </div>
    <div class="grid">
      <div class="card">
        <div class="tabs" id="tabs"></div>
        <div class="row filters">
          <input id="flt-text" type="search" placeholder="filter: name, id, MOA, cell" value="${esc(q.get("q") || "")}">
          <select id="flt-cell"><option value="">all cell lines</option></select>
          <label class="${level === "sig" ? "" : "hidden"}">FDR ≤ <input id="flt-fdr" type="number" step="0.01" min="0" max="1" value="${esc(q.get("fdr_max") || "")}" style="width:5em"></label>
        </div>
        <div id="table" class="table-wrap"></div>
      </div>
      <div class="card">
        <h2>Perturbagen × cell line (τ)</h2>
        <div id="heatmap" class="plot"></div>
        <h2>Enrichment running sum</h2>
        <p class="muted" id="rs-hint">Open the Signatures tab and click a row to see how your genes fall in its ranked list.</p>
        <div id="running-sum" class="plot"></div>
      </div>
    </div>
  </section>`);
  view.replaceChildren(page);
  const tabs = page.querySelector("#tabs");
  for (const [key, spec] of Object.entries(LEVELS)) {
    if (!job.levels.includes(key)) continue;
    const b = el(`<button type="button" class="tab ${key === level ? "active" : ""}" data-level="${key}">${spec.label}</button>`);
    b.addEventListener("click", () => { const nq = new URLSearchParams(q); nq.set("level", key); nq.delete("offset"); nq.delete("sort"); nq.delete("order"); setHash(`/results/${jobId}`, nq); });
    tabs.append(b);
  }
  const selq = page.querySelector("#sel-query");
  if (selq) selq.addEventListener("change", () => { const nq = new URLSearchParams(q); nq.set("query", selq.value); setHash(`/results/${jobId}`, nq); });
  const cells = await api("/cells?limit=1000");
  const fc = page.querySelector("#flt-cell");
  for (const c of cells.items) fc.append(new Option(c.cell_id, c.cell_id, false, c.cell_id === q.get("cell_id")));
  const refilter = () => {
    const nq = new URLSearchParams(q);
    for (const [k, v] of [["q", page.querySelector("#flt-text").value], ["cell_id", fc.value], ["fdr_max", page.querySelector("#flt-fdr").value]]) {
      if (v) nq.set(k, v); else nq.delete(k);
    }
    nq.delete("offset");
    setHash(`/results/${jobId}`, nq);
  };
  let timer = null;
  page.querySelector("#flt-text").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refilter, 350); });
  fc.addEventListener("change", refilter);
  page.querySelector("#flt-fdr").addEventListener("change", refilter);
  renderDownloads(jobId, page.querySelector("#downloads"));
  renderTable(jobId, query, level, q, page.querySelector("#table"));
  renderHeatmap(jobId, query, page.querySelector("#heatmap"));
  if (q.get("sig")) renderRunningSum(jobId, query, q.get("sig"), page.querySelector("#running-sum"));
}

async function renderTable(jobId, query, level, q, box) {
  const p = new URLSearchParams({ level, query, limit: q.get("limit") || "50", offset: q.get("offset") || "0", order: q.get("order") || "desc" });
  for (const k of ["sort", "q", "cell_id", "fdr_max"]) if (q.get(k)) p.set(k, q.get(k));
  if (level !== "sig") p.delete("fdr_max");
  if (!["sig", "pert_cell"].includes(level)) p.delete("cell_id");
  let page;
  try {
    page = await api(`/jobs/${jobId}/results?${p}`);
  } catch (err) { box.textContent = err.message; return; }
  const cols = LEVELS[level].cols.filter((c) => page.items.length === 0 || c in page.items[0]);
  const table = el(`<table class="results" data-level="${level}"><thead><tr></tr></thead><tbody></tbody></table>`);
  const tr = table.querySelector("thead tr");
  for (const c of cols) {
    const active = page.sort === c;
    const arrow = active ? (page.order === "asc" ? " ▲" : page.order === "abs" ? " |▼|" : " ▼") : "";
    const th = el(`<th class="sortable ${active ? "active" : ""}" title="sort by ${esc(c)}">${esc(label(c))}${arrow}</th>`);
    th.addEventListener("click", () => {
      const nq = new URLSearchParams(q);
      const next = !active ? "desc" : page.order === "desc" ? "asc" : page.order === "asc" ? "abs" : "desc";
      nq.set("sort", c); nq.set("order", next); nq.delete("offset");
      setHash(`/results/${jobId}`, nq);
    });
    tr.append(th);
  }
  const tbody = table.querySelector("tbody");
  for (const row of page.items) {
    const r = el(`<tr></tr>`);
    for (const c of cols) {
      const v = row[c];
      let cell = esc(fmt(v, c === "fdr_q" ? 4 : c === "tau" ? 1 : 3));
      if (c === "id" && level === "pert_summary") cell = `<a href="#/pert/${encodeURIComponent(v)}">${esc(v)}</a>`;
      if (c === "pert_id") cell = `<a href="#/pert/${encodeURIComponent(v)}">${esc(v)}</a>`;
      if (c === "sig_id") cell = `<a href="#/sig/${encodeURIComponent(v)}?job=${jobId}&query=${encodeURIComponent(query)}">${esc(v)}</a>`;
      const cls = ["tau", "ncs", "wtcs"].includes(c) && typeof v === "number" ? (v > 0 ? "pos" : v < 0 ? "neg" : "") : "";
      r.append(el(`<td class="${cls}">${cell}</td>`));
    }
    if (level === "sig") {
      r.classList.add("clickable");
      r.addEventListener("click", (ev) => {
        if (ev.target.tagName === "A") return;
        tbody.querySelectorAll("tr").forEach((x) => x.classList.remove("selected"));
        r.classList.add("selected");
        renderRunningSum(jobId, query, row.sig_id, document.getElementById("running-sum"));
      });
    }
    tbody.append(r);
  }
  const offset = page.offset, limit = page.limit;
  const pager = el(`<div class="pager"><span>${page.total ? offset + 1 : 0}–${Math.min(offset + limit, page.total)} of ${page.total}</span>
    <button type="button" ${offset === 0 ? "disabled" : ""} data-dir="-1">◀ previous</button>
    <button type="button" ${offset + limit >= page.total ? "disabled" : ""} data-dir="1">next ▶</button></div>`);
  pager.querySelectorAll("button").forEach((b) => b.addEventListener("click", () => {
    const nq = new URLSearchParams(q);
    nq.set("offset", String(Math.max(0, offset + Number(b.dataset.dir) * limit)));
    setHash(`/results/${jobId}`, nq);
  }));
  box.replaceChildren(table, pager);
}

function label(c) {
  return { id: "id", pert_iname: "name", pert_type: "type", moa: "MOA", n_cells: "cells", tau: "τ", ncs: "NCS",
    fdr_q: "FDR q", wtcs: "WTCS", cell_id: "cell line", pert_idose: "dose", n_members: "members", sig_id: "signature", pert_id: "perturbagen" }[c] || c;
}

async function renderHeatmap(jobId, query, box) {
  try {
    const hm = await api(`/jobs/${jobId}/heatmap?query=${encodeURIComponent(query)}&n=25`);
    if (!window.Plotly) { box.textContent = "plotly.js did not load"; return; }
    const short = (t) => (t.length > 24 ? t.slice(0, 23) + "…" : t);
    const labels = hm.rows.map((r, i) => (hm.row_labels[i] && hm.row_labels[i] !== r ? `${short(hm.row_labels[i])} (${r})` : r));
    await Plotly.newPlot(box, [{
      type: "heatmap", z: hm.values, x: hm.columns, y: labels, zmin: -100, zmax: 100,
      colorscale: [[0, "#2166ac"], [0.5, "#f7f7f7"], [1, "#b2182b"]], colorbar: { title: { text: hm.metric } },
      hovertemplate: "%{y}<br>%{x}: %{z:.1f}<extra></extra>",
    }], { margin: { l: 260, r: 10, t: 10, b: 60 }, height: Math.max(300, 22 * hm.rows.length + 80), yaxis: { autorange: "reversed" } },
    { displaylogo: false, responsive: true });
    box.dataset.rendered = "1";
  } catch (err) { box.textContent = err.message; }
}

async function renderRunningSum(jobId, query, sigId, box) {
  try {
    const rs = await api(`/jobs/${jobId}/running-sum?query=${encodeURIComponent(query)}&sig_id=${encodeURIComponent(sigId)}`);
    const hint = document.getElementById("rs-hint");
    if (hint) hint.textContent = `Signature ${sigId}: ES up ${fmt(rs.curves.up?.es)}, ES down ${fmt(rs.curves.down?.es)}.`;
    const colors = { up: "#b2182b", down: "#2166ac" };
    const traces = [];
    for (const [dir, c] of Object.entries(rs.curves)) {
      traces.push({ x: c.x, y: c.y, mode: "lines", name: `${dir} set (ES ${fmt(c.es)})`, line: { color: colors[dir], width: 2 } });
      traces.push({ x: c.hit_ranks, y: c.hit_ranks.map(() => (dir === "up" ? 1 : 0)), mode: "markers", yaxis: "y2",
        marker: { symbol: "line-ns-open", size: 14, color: colors[dir] }, showlegend: false, text: c.hit_symbols,
        hovertemplate: `%{text}: ${dir} gene at rank %{x}<extra></extra>` });
    }
    await Plotly.newPlot(box, traces, {
      margin: { l: 55, r: 10, t: 30, b: 50 }, height: 360,
      xaxis: { title: { text: `rank in the signature (1 = most up, ${rs.n_features} = most down)` }, range: [0, rs.n_features], zeroline: false, anchor: "y2" },
      yaxis: { title: { text: "running sum" }, domain: [0.25, 1], zeroline: true },
      yaxis2: { domain: [0, 0.18], range: [-0.6, 1.6], tickvals: [0, 1], ticktext: ["down", "up"], showgrid: false, zeroline: false },
      legend: { orientation: "h", x: 0, y: 1.12 },
    }, { displaylogo: false, responsive: true });
    box.dataset.rendered = "1";
  } catch (err) { box.textContent = err.message; }
}

async function renderDownloads(jobId, box) {
  try {
    const res = await api(`/jobs/${jobId}/downloads`);
    const sel = el(`<select id="dl-select" aria-label="file to download"></select>`);
    for (const f of res.files) sel.append(new Option(`${f.name} — ${f.description}`, f.name));
    const btn = el(`<button type="button" id="dl-button">Download</button>`);
    btn.addEventListener("click", () => download(jobId, sel.value));
    box.replaceChildren("Files: ", sel, btn);
  } catch (err) { box.textContent = err.message; }
}

async function download(jobId, name) {
  const res = await fetch(`${API}/jobs/${jobId}/downloads/${encodeURIComponent(name)}`, { headers: headers() });
  if (!res.ok) { showMessage(`download failed: ${res.status}`); return; }
  const blob = await res.blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `opencmap-${jobId.slice(0, 8)}-${name}`;
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

// ------------------------------------------------------------------ jobs
async function renderJob(jobId) {
  navActive("jobs");
  const job = await api(`/jobs/${jobId}`);
  if (job.status === "done") { setHash(`/results/${jobId}`); return; }
  const pct = Math.round(100 * job.progress);
  view.replaceChildren(el(`<section class="card"><h1>Job ${esc(jobId.slice(0, 8))}</h1>
    <p>${job.n_queries} queries — <b class="status ${esc(job.status)}">${esc(job.status)}</b></p>
    <div class="progress"><div style="width:${pct}%"></div></div>
    ${job.error ? `<p class="why">${esc(job.error)}</p>` : ""}
    <p class="muted">This page refreshes by itself; the results open when the job is done.</p></section>`));
  if (job.status === "queued" || job.status === "running") {
    setTimeout(() => { if (params().path === `/jobs/${jobId}`) renderJob(jobId); }, 700);
  }
}

async function renderJobs(q) {
  navActive("jobs");
  const offset = Number(q.get("offset") || 0);
  const res = await api(`/jobs?limit=25&offset=${offset}`);
  const rows = res.items.map((j) => {
    const names = j.queries.length ? j.queries.map((x) => x.name).slice(0, 3).join(", ") : (j.request.queries || []).map((x) => x.name).slice(0, 3).join(", ");
    const when = new Date(j.created * 1000).toLocaleString();
    const link = j.status === "done" ? `#/results/${j.id}` : `#/jobs/${j.id}`;
    return `<tr><td><a href="${link}">${esc(j.id.slice(0, 8))}</a></td><td>${esc(when)}</td><td>${esc(names)}${j.n_queries > 3 ? " …" : ""}</td>
      <td>${j.n_queries}</td><td>${esc(j.mode)}</td><td class="status ${esc(j.status)}">${esc(j.status)}${j.status === "running" ? ` ${Math.round(100 * j.progress)}%` : ""}</td>
      <td class="why">${esc(j.error || "")}</td></tr>`;
  }).join("");
  view.replaceChildren(el(`<section class="card"><h1>Job history</h1>
    <table class="results"><thead><tr><th>job</th><th>submitted</th><th>queries</th><th>n</th><th>mode</th><th>status</th><th></th></tr></thead>
    <tbody>${rows || `<tr><td colspan="7" class="muted">No jobs yet: run a query first.</td></tr>`}</tbody></table>
    <div class="pager">${res.total} jobs
      ${offset > 0 ? `<a href="#/jobs?offset=${Math.max(0, offset - 25)}">◀ newer</a>` : ""}
      ${offset + 25 < res.total ? `<a href="#/jobs?offset=${offset + 25}">older ▶</a>` : ""}</div></section>`));
}

// ------------------------------------------------------------------ detail pages
function metaTable(obj, skip = []) {
  return `<table class="meta">${Object.entries(obj).filter(([k, v]) => !skip.includes(k) && typeof v !== "object")
    .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(fmt(v))}</td></tr>`).join("")}</table>`;
}

async function renderSignature(sigId, q) {
  navActive("");
  const sig = await api(`/signatures/${encodeURIComponent(sigId)}`);
  const page = el(`<section class="card"><h1>Signature ${esc(sigId)}</h1>
    <p>Perturbagen <a href="#/pert/${encodeURIComponent(sig.pert_id)}">${esc(sig.pert_iname || sig.pert_id)}</a> in cell line ${esc(sig.cell_id)}.</p>
    ${metaTable(sig)}
    ${q.get("job") ? `<h2>Running sum of query ${esc(q.get("query") || "")}</h2><div id="running-sum" class="plot"></div>
      <p><a href="#/results/${esc(q.get("job"))}">back to the results</a></p>` : ""}</section>`);
  view.replaceChildren(page);
  if (q.get("job")) renderRunningSum(q.get("job"), q.get("query"), sigId, page.querySelector("#running-sum"));
}

async function renderPerturbagen(pertId) {
  navActive("");
  const p = await api(`/perturbagens/${encodeURIComponent(pertId)}`);
  const sigs = p.signatures.map((s) => `<tr><td><a href="#/sig/${encodeURIComponent(s.sig_id)}">${esc(s.sig_id)}</a></td>
    <td>${esc(s.cell_id)}</td><td>${esc(s.pert_idose ?? s.pert_dose ?? "")}</td><td>${esc(s.pert_itime ?? s.pert_time ?? "")}</td></tr>`).join("");
  const pcls = (p.pcls || "").split("|").filter(Boolean).map((x) => `<a href="#/pcl/${encodeURIComponent(x)}">${esc(x)}</a>`).join(", ");
  view.replaceChildren(el(`<section class="card"><h1>${esc(p.pert_iname || pertId)} <span class="muted">${esc(pertId)}</span></h1>
    ${metaTable(p, ["signatures", "pcls"])}
    <p>Perturbagen classes: ${pcls || "none"}</p>
    <h2>Signatures (${p.signatures.length})</h2>
    <table class="results"><thead><tr><th>signature</th><th>cell line</th><th>dose</th><th>time</th></tr></thead><tbody>${sigs}</tbody></table></section>`));
}

async function renderPcl(name) {
  navActive("browse");
  const p = await api(`/pcls/${encodeURIComponent(name)}`);
  const rows = p.perturbagens.map((x) => `<tr><td><a href="#/pert/${encodeURIComponent(x.pert_id)}">${esc(x.pert_id)}</a></td><td>${esc(x.pert_iname)}</td><td>${esc(x.moa ?? "")}</td><td>${esc(x.n_sigs)}</td></tr>`).join("");
  view.replaceChildren(el(`<section class="card"><h1>PCL ${esc(name)}</h1><p>${p.members.length} members, ${p.perturbagens.length} in this store.</p>
    <table class="results"><thead><tr><th>perturbagen</th><th>name</th><th>MOA</th><th>signatures</th></tr></thead><tbody>${rows}</tbody></table></section>`));
}

async function renderBrowse(q) {
  navActive("browse");
  const text = q.get("q") || "";
  const offset = Number(q.get("offset") || 0);
  const [perts, pcls] = await Promise.all([
    api(`/perturbagens?limit=50&offset=${offset}&q=${encodeURIComponent(text)}`), api(`/pcls?limit=1000`)]);
  const rows = perts.items.map((x) => `<tr><td><a href="#/pert/${encodeURIComponent(x.pert_id)}">${esc(x.pert_id)}</a></td><td>${esc(x.pert_iname)}</td>
    <td>${esc(x.pert_type)}</td><td>${esc(x.moa ?? "")}</td><td>${x.n_sigs}</td><td>${x.n_cells}</td></tr>`).join("");
  const page = el(`<section class="card"><h1>Browse the store</h1>
    <input id="browse-q" type="search" placeholder="search perturbagens: name, id, MOA" value="${esc(text)}">
    <table class="results"><thead><tr><th>perturbagen</th><th>name</th><th>type</th><th>MOA</th><th>signatures</th><th>cells</th></tr></thead><tbody>${rows}</tbody></table>
    <div class="pager">${perts.total} perturbagens
      ${offset > 0 ? `<a href="#/browse?q=${encodeURIComponent(text)}&offset=${Math.max(0, offset - 50)}">◀ previous</a>` : ""}
      ${offset + 50 < perts.total ? `<a href="#/browse?q=${encodeURIComponent(text)}&offset=${offset + 50}">next ▶</a>` : ""}</div>
    <h2>Perturbagen classes (PCLs)</h2>
    <p>${pcls.items.map((x) => `<a href="#/pcl/${encodeURIComponent(x.pcl)}">${esc(x.pcl)}</a> (${x.n_in_store})`).join(", ") || "none loaded"}</p></section>`);
  let timer = null;
  page.querySelector("#browse-q").addEventListener("input", (ev) => {
    clearTimeout(timer);
    timer = setTimeout(() => setHash("/browse", new URLSearchParams({ q: ev.target.value })), 400);
  });
  view.replaceChildren(page);
}

// ------------------------------------------------------------------ boot
async function loadInfo() {
  if (!INFO) {
    INFO = await api("/info");
    document.getElementById("store-info").textContent =
      `${INFO.store.n_signatures} signatures · ${INFO.n_perturbagens} perturbagens · ${INFO.n_cells} cell lines`;
  }
  return INFO;
}

async function route() {
  const { path, query } = params();
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  try {
    if (parts.length === 0) await renderQuery();
    else if (parts[0] === "results" && parts[1]) await renderResults(parts[1], query);
    else if (parts[0] === "jobs" && parts[1]) await renderJob(parts[1]);
    else if (parts[0] === "jobs") await renderJobs(query);
    else if (parts[0] === "sig" && parts[1]) await renderSignature(parts[1], query);
    else if (parts[0] === "pert" && parts[1]) await renderPerturbagen(parts[1]);
    else if (parts[0] === "pcl" && parts[1]) await renderPcl(parts[1]);
    else if (parts[0] === "browse") await renderBrowse(query);
    else view.replaceChildren(el(`<section class="card"><h1>Not found</h1><p><a href="#/">Start a new query</a></p></section>`));
  } catch (err) {
    showMessage(err.message);
  }
}

document.getElementById("token-save").addEventListener("click", () => {
  localStorage.setItem("opencmap-token", document.getElementById("token-input").value.trim());
  document.getElementById("token-bar").classList.add("hidden");
  INFO = null;
  route();
});
window.addEventListener("hashchange", () => { showMessage(""); route(); });
loadInfo().catch(() => {});
route();
