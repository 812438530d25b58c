// opencmap web UI: a small single-page app that talks only to the REST API (/api/v1).
"use strict";

const API = window.OPENCMAP_API || "/api/v1";
const view = document.getElementById("view");
let INFO = null;

// plotly.js (3.5 MB, served locally) loads beside the app: tables are usable before it is parsed.
let PLOTLY = null;
function plotlyReady() {
  if (!PLOTLY) {
    PLOTLY = window.Plotly ? Promise.resolve(window.Plotly) : new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = "/ui/vendor/plotly.min.js";
      s.async = true;
      s.onload = () => resolve(window.Plotly);
      s.onerror = () => { PLOTLY = null; reject(new Error("plotly.js did not load: the plots cannot be drawn")); };
      document.head.append(s);
    });
  }
  return PLOTLY;
}

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
// Every request shows the loading bar at once (no stale view without an indicator).
let PENDING = 0;
function busy(delta) {
  PENDING = Math.max(0, PENDING + delta);
  document.body.classList.toggle("loading", PENDING > 0);
}
async function api(path, options = {}) {
  busy(1);
  try { return await apiCall(path, options); } finally { busy(-1); }
}
async function apiCall(path, options = {}) {
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

// Levels of a result, the columns shown for each, and perturbagen types.
const LEVELS = {
  // scores come early: on a phone they are visible without scrolling the table sideways
  pert_summary: { label: "Perturbagens", cols: ["id", "pert_iname", "tau", "ncs", "pert_type", "moa", "n_cells"] },
  sig: { label: "Signatures", cols: ["sig_id", "pert_iname", "tau", "ncs", "fdr_q", "pert_type", "cell_id", "wtcs", "pert_idose", "pert_itime", "moa"] },
  pert_cell: { label: "Perturbagen × cell", cols: ["pert_id", "pert_iname", "cell_id", "tau", "ncs", "pert_type", "moa"] },
  pcl_cell: { label: "PCL × cell", cols: ["pcl", "cell_id", "n_members", "tau", "ncs"] },
  pcl_summary: { label: "PCLs", cols: ["id", "n_members", "tau", "ncs", "member_names"] },
};
const TYPED = ["sig", "pert_cell", "pert_summary"]; // levels with a pert_type column
const PERT_TYPES = {
  trt_cp: "compound", trt_sh: "knockdown (shRNA)", "trt_sh.cgs": "consensus knockdown", "trt_sh.css": "knockdown seed control",
  trt_oe: "over-expression", "trt_oe.mut": "mutant over-expression", trt_xpr: "CRISPR knockout", trt_lig: "ligand",
  trt_poscon: "positive control", ctl_vehicle: "control: vehicle", ctl_vector: "control: empty vector", ctl_untrt: "control: untreated",
  "ctl_vehicle.cns": "control: vehicle (consensus)", "ctl_vector.cns": "control: vector (consensus)", "ctl_untrt.cns": "control: untreated (consensus)",
};
const METRIC_LEVELS = ["tau", "ncs"]; // sort keys the heatmap can follow
function typeLabel(t) { return PERT_TYPES[t] || t || ""; }
function isControl(t) { return String(t || "").startsWith("ctl"); }
function ctx(jobId, query) { return jobId ? `?job=${encodeURIComponent(jobId)}&query=${encodeURIComponent(query || "")}` : ""; }
function placeholder(text) { return el(`<div class="placeholder" role="status"><span class="spinner" aria-hidden="true"></span>${esc(text)}</div>`); }
function scoreClass(v) { return typeof v === "number" ? (v > 0 ? "pos" : v < 0 ? "neg" : "") : ""; }
function tauColor(v) {
  if (typeof v !== "number" || Number.isNaN(v)) return "";
  const a = Math.min(1, Math.abs(v) / 100) * 0.75;
  return v >= 0 ? `background: rgba(178,24,43,${a.toFixed(2)})` : `background: rgba(33,102,172,${a.toFixed(2)})`;
}

// The API query of the table's filters (shared by the table and the heatmap).
function filterParams(q, level) {
  const p = new URLSearchParams();
  for (const k of ["q", "cell_id", "fdr_max", "pert_type"]) if (q.get(k)) p.set(k, q.get(k));
  if (level !== "sig") p.delete("fdr_max");
  if (!["sig", "pert_cell", "pcl_cell"].includes(level)) p.delete("cell_id");
  if (!TYPED.includes(level)) p.delete("pert_type");
  p.set("controls", q.get("controls") === "1" ? "true" : "false");
  return p;
}

async function renderResults(jobId, q) {
  navActive("");
  const job = await api(`/jobs/${jobId}`);
  if (job.status !== "done") return renderJob(jobId);
  const info = await loadInfo();
  const query = q.get("query") || job.queries[0].name;
  const level = job.levels.includes(q.get("level")) ? q.get("level") : job.levels.includes("pert_summary") ? "pert_summary" : job.levels[0];
  const qinfo = job.queries.find((x) => x.name === query) || job.queries[0];
  const showControls = q.get("controls") === "1";
  const types = Object.keys(info.pert_types || {}).filter((t) => showControls || !isControl(t));
  const nControls = Object.entries(info.pert_types || {}).filter(([t]) => isControl(t)).reduce((s, [, n]) => s + n, 0);
  const typed = TYPED.includes(level);
  const pcl = level.startsWith("pcl");
  const page = el(`<section>
    <div class="card">
      <h1>Results: ${esc(query)}</h1>
      <p class="muted">Metric ${esc(job.method)}, feature space ${esc(job.space)}, ${qinfo.up_genes.length} up and
        ${qinfo.down_genes.length} down genes used${qinfo.unknown.length ? `, ${qinfo.unknown.length} unknown ignored` : ""}.
        Positive τ: the perturbagen mimics your query; negative: it reverses it. <a href="#/guide">How to read τ, NCS and FDR</a></p>
      ${usedBanner(job, qinfo)}
      <div class="row">
        ${job.queries.length > 1 ? `<label>Query <select id="sel-query">${job.queries.map((x) => `<option ${x.name === query ? "selected" : ""}>${esc(x.name)}</option>`).join("")}</select></label>` : ""}
        <span class="grow"></span>
        <span id="downloads" class="downloads"></span>
      </div>
    </div>
    <div class="grid">
      <div class="card">
        <div class="tabs" id="tabs" role="tablist"></div>
        <div class="row filters">
          <input id="flt-text" type="search" aria-label="filter rows" placeholder="filter: name, id, MOA, cell" value="${esc(q.get("q") || "")}">
          <select id="flt-type" aria-label="perturbagen type" ${typed ? "" : "disabled title=\"PCL rows have no perturbagen type\""}>
            <option value="">all perturbagen types</option>
            ${types.map((t) => `<option value="${esc(t)}" ${q.get("pert_type") === t ? "selected" : ""}>${esc(typeLabel(t))} (${esc(t)})</option>`).join("")}
          </select>
          <label class="switch" title="controls (pert_type ctl_*: vehicle, empty vector, untreated) are hidden by default">
            <input type="checkbox" id="flt-controls" ${showControls ? "checked" : ""}> show controls${nControls ? ` (${nControls})` : ""}</label>
          <select id="flt-cell" aria-label="cell line" class="${["sig", "pert_cell", "pcl_cell"].includes(level) ? "" : "hidden"}"><option value="">all cell lines</option></select>
          <label class="inline ${level === "sig" ? "" : "hidden"}">FDR ≤ <input id="flt-fdr" type="number" step="0.01" min="0" max="1" value="${esc(q.get("fdr_max") || "")}" style="width:5em"></label>
        </div>
        <div id="table" class="table-wrap"></div>
      </div>
      <div class="card">
        <h2 id="hm-title">${pcl ? "PCL" : "Perturbagen"} × cell line (τ)</h2>
        <div id="heatmap" class="plot"></div>
        <p class="muted small" id="hm-caption"></p>
        <h2>Enrichment running sum</h2>
        <p class="muted" id="rs-hint">Open the Signatures tab and click a row to see how your genes fall in its ranked list.</p>
        <div id="running-sum" class="plot rs"></div>
        <div id="rs-genes" class="le-genes"></div>
      </div>
    </div>
  </section>`);
  page.querySelector("#table").append(placeholder("Loading the table…"));
  page.querySelector("#heatmap").append(placeholder("Loading the heatmap…"));
  view.replaceChildren(page);
  restoreFocus();
  const tabs = page.querySelector("#tabs");
  for (const [key, spec] of Object.entries(LEVELS)) {
    if (!job.levels.includes(key)) continue;
    const b = el(`<button type="button" role="tab" class="tab ${key === level ? "active" : ""}" data-level="${key}">${spec.label}</button>`);
    b.addEventListener("click", () => { const nq = new URLSearchParams(q); nq.set("level", key); nq.delete("offset"); nq.delete("sort"); nq.delete("order"); setHash(`/results/${jobId}`, nq); });
    tabs.append(b);
  }
  const selq = page.querySelector("#sel-query");
  if (selq) selq.addEventListener("change", () => { const nq = new URLSearchParams(q); nq.set("query", selq.value); setHash(`/results/${jobId}`, nq); });
  const fc = page.querySelector("#flt-cell");
  const refilter = () => {
    const nq = new URLSearchParams(q);
    for (const [k, v] of [["q", page.querySelector("#flt-text").value], ["cell_id", fc.value], ["fdr_max", page.querySelector("#flt-fdr").value],
      ["pert_type", page.querySelector("#flt-type").value], ["controls", page.querySelector("#flt-controls").checked ? "1" : ""]]) {
      if (v) nq.set(k, v); else nq.delete(k);
    }
    if (!page.querySelector("#flt-controls").checked && isControl(nq.get("pert_type"))) nq.delete("pert_type");
    nq.delete("offset");
    setHash(`/results/${jobId}`, nq);
  };
  let timer = null;
  page.querySelector("#flt-text").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refilter, 350); });
  for (const id of ["#flt-type", "#flt-controls", "#flt-fdr"]) page.querySelector(id).addEventListener("change", refilter);
  fc.addEventListener("change", refilter);
  api("/cells?limit=1000").then((cells) => {
    for (const c of cells.items) fc.append(new Option(c.cell_id, c.cell_id, false, c.cell_id === q.get("cell_id")));
  }).catch(() => {});
  renderDownloads(jobId, query, page.querySelector("#downloads"));
  // the plots draw in their own time (with their placeholders); the page is ready with its table
  // plotly.js is parsed only once the table is shown (its 3.5 MB would hold the table back)
  const table = renderTable(jobId, query, level, q, page.querySelector("#table"));
  renderHeatmap(jobId, query, level, q, page.querySelector("#heatmap"), table);
  if (q.get("sig")) table.then(() => renderRunningSum(jobId, query, q.get("sig"), page.querySelector("#running-sum")));
  await table;
}

async function renderTable(jobId, query, level, q, box) {
  const p = filterParams(q, level);
  for (const [k, v] of [["level", level], ["query", query], ["limit", q.get("limit") || "50"], ["offset", q.get("offset") || "0"], ["order", q.get("order") || "desc"]]) p.set(k, v);
  if (q.get("sort")) p.set("sort", q.get("sort"));
  box.classList.add("busy");
  let page;
  try {
    page = await api(`/jobs/${jobId}/results?${p}`);
  } catch (err) { box.replaceChildren(el(`<p class="why">${esc(err.message)}</p>`)); return; } finally { box.classList.remove("busy"); }
  const cols = LEVELS[level].cols.filter((c) => page.items.length === 0 || c in page.items[0]);
  const table = el(`<table class="results" data-level="${level}"><thead><tr></tr></thead><tbody></tbody></table>`);
  const tr = table.querySelector("thead tr");
  for (const c of cols) {
    const active = page.sort === c;
    const arrow = active ? (page.order === "asc" ? " ▲" : page.order === "abs" ? " |▼|" : " ▼") : "";
    const th = el(`<th class="sortable ${active ? "active" : ""}" title="sort by ${esc(c)}" scope="col">${esc(label(c, level))}${arrow}</th>`);
    th.addEventListener("click", () => {
      const nq = new URLSearchParams(q);
      const next = !active ? "desc" : page.order === "desc" ? "asc" : page.order === "asc" ? "abs" : "desc";
      nq.set("sort", c); nq.set("order", next); nq.delete("offset");
      setHash(`/results/${jobId}`, nq);
    });
    tr.append(th);
  }
  const tbody = table.querySelector("tbody");
  const c2 = ctx(jobId, query);
  for (const row of page.items) {
    const r = el(`<tr></tr>`);
    for (const c of cols) {
      const v = row[c];
      let cell = esc(fmt(v, c === "fdr_q" ? 4 : c === "tau" ? 1 : 3));
      let cls = ["tau", "ncs", "wtcs"].includes(c) ? scoreClass(v) : "";
      if ((c === "id" && level === "pert_summary") || c === "pert_id") cell = `<a href="#/pert/${encodeURIComponent(v)}${c2}">${esc(v)}</a>`;
      if ((c === "id" && level === "pcl_summary") || c === "pcl") cell = `<a href="#/pcl/${encodeURIComponent(v)}${c2}">${esc(v)}</a>`;
      if (c === "sig_id") cell = `<a href="#/sig/${encodeURIComponent(v)}${c2}">${esc(v)}</a>`;
      if (c === "pert_type") cell = `<span class="type-tag ${isControl(v) ? "ctl" : ""}" title="${esc(v)}">${esc(typeLabel(v))}</span>`;
      if (c === "member_names") {
        const ids = String(row.members || "").split("|").filter(Boolean);
        const names = String(v || "").split("|");
        cell = ids.map((id, i) => `<a href="#/pert/${encodeURIComponent(id)}${c2}" title="${esc(id)}">${esc(names[i] || id)}</a>`).join(", ");
        cls = "wrap";
      }
      r.append(el(`<td class="${cls}" title="${esc(typeof v === "number" ? "" : fmt(v))}">${cell}</td>`));
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
  if (!page.items.length) tbody.append(el(`<tr><td colspan="${cols.length}" class="muted">No rows match these filters${q.get("controls") === "1" ? "" : " (controls are hidden)"}.</td></tr>`));
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

function label(c, level) {
  return { id: level && level.startsWith("pcl") ? "PCL" : "id", pcl: "PCL", pert_iname: "name", pert_type: "type", moa: "MOA", n_cells: "cells",
    tau: "τ", ncs: "NCS", fdr_q: "FDR q", wtcs: "WTCS", cell_id: "cell line", pert_idose: "dose", pert_itime: "time",
    n_members: "n members", member_names: "members (named)", sig_id: "signature", pert_id: "perturbagen" }[c] || c;
}

async function renderHeatmap(jobId, query, level, q, box, after = Promise.resolve()) {
  const pcl = level.startsWith("pcl");
  const p = filterParams(q, pcl ? "pcl_summary" : "pert_summary");
  const sort = METRIC_LEVELS.includes(q.get("sort")) ? q.get("sort") : "tau";
  const order = METRIC_LEVELS.includes(q.get("sort")) || !q.get("sort") ? (q.get("order") || "desc") : "desc";
  for (const [k, v] of [["query", query], ["n", "25"], ["kind", pcl ? "pcl" : "pert"], ["sort", sort], ["order", order]]) p.set(k, v);
  box.classList.add("busy");
  try {
    const [hm] = await Promise.all([api(`/jobs/${jobId}/heatmap?${p}`), after.catch(() => {}).then(plotlyReady)]);
    const caption = document.getElementById("hm-caption");
    const what = pcl ? "PCLs" : "perturbagens";
    const ord = { desc: "largest first", asc: "smallest first", abs: "largest |value| first" }[order];
    if (caption) {
      caption.innerHTML = `Rows: the first ${hm.rows.length} ${what} of the ${pcl ? "PCL" : "perturbagen"} summary with the table's filters, sorted by ${esc(label(sort))} (${ord})` +
        `${METRIC_LEVELS.includes(q.get("sort")) || !q.get("sort") ? "" : ` (the table's sort by ${esc(label(q.get("sort")))} has no summary value)`}. ` +
        `Colour: τ of each ${pcl ? "PCL" : "perturbagen"} in each cell line, from −100 (blue: reverses the query) through 0 (white) to +100 (red: mimics it); ` +
        `empty: not profiled in that cell line. Click a cell to open its page.`;
    }
    if (!hm.rows.length) { box.replaceChildren(el(`<p class="muted">No rows match these filters.</p>`)); return; }
    const narrow = window.innerWidth < 600; // phones: shortened tick labels; the hover always has the full one
    const shortLabel = (t) => (narrow && t.length > 22 ? t.slice(0, 21) + "…" : t);
    // "name (trt_cp)" from the API -> "name (compound)", the type names the table uses
    const rowLabels = hm.row_labels.map((t) => t.replace(/ \(([^()]+)\)$/, (m, code) => (PERT_TYPES[code] ? ` (${typeLabel(code)})` : m)));
    const idx = hm.rows.map((_, i) => i);
    const wrap = (t) => (narrow ? t.replace(/(.{24}[^ -]*[ -])/g, "$1<br>") : t); // long names break over lines on phones
    const custom = hm.values.map((row, i) => row.map(() => `${wrap(esc(rowLabels[i]))}<br>${esc(hm.rows[i])}`));
    box.replaceChildren();
    await Plotly.newPlot(box, [{
      type: "heatmap", z: hm.values, x: hm.columns, y: idx, zmin: -100, zmax: 100, customdata: custom, xgap: 1, ygap: 1,
      colorscale: [[0, "#2166ac"], [0.5, "#f7f7f7"], [1, "#b2182b"]],
      colorbar: { title: { text: hm.metric === "tau" ? "τ" : hm.metric }, tickvals: [-100, -50, 0, 50, 100], thickness: 12, len: 0.9 },
      hovertemplate: "%{customdata}<br>cell line %{x}<br>" + (hm.metric === "tau" ? "τ" : hm.metric) + " %{z:.1f}<extra></extra>",
      hoverongaps: false, hoverlabel: { font: { size: narrow ? 11 : 13 } },
    }], {
      margin: { l: 10, r: 10, t: 36, b: 10 }, height: Math.max(280, 22 * hm.rows.length + 116), // t: room for the mode bar above the cells
      // no zero line or grid: row 0 is a perturbagen, not an origin (a line was drawn across it)
      yaxis: { autorange: "reversed", tickvals: idx, ticktext: rowLabels.map(shortLabel), automargin: true, tickfont: { size: 11 }, zeroline: false, showgrid: false },
      xaxis: { automargin: true, tickangle: hm.columns.length > 8 ? -45 : 0, type: "category" },
    }, { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] });
    box.on("plotly_click", (ev) => {
      const pt = ev.points && ev.points[0];
      if (!pt) return;
      const id = hm.rows[Number(pt.y)];
      if (id !== undefined) setHash(`/${pcl ? "pcl" : "pert"}/${encodeURIComponent(id)}`, new URLSearchParams({ job: jobId, query }));
    });
    box.dataset.rendered = "1";
    box.dataset.rows = JSON.stringify(hm.rows);
  } catch (err) { box.replaceChildren(el(`<p class="why">${esc(err.message)}</p>`)); } finally { box.classList.remove("busy"); }
}

async function renderRunningSum(jobId, query, sigId, box) {
  box.classList.add("busy");
  if (!box.children.length) box.append(placeholder("Loading the running sum…"));
  try {
    const [rs] = await Promise.all([api(`/jobs/${jobId}/running-sum?query=${encodeURIComponent(query)}&sig_id=${encodeURIComponent(sigId)}`), plotlyReady()]);
    const hint = document.getElementById("rs-hint");
    if (hint) hint.textContent = `Signature ${sigId}: ES up ${fmt(rs.curves.up?.es)}, ES down ${fmt(rs.curves.down?.es)}.`;
    const colors = { up: "#b2182b", down: "#2166ac" };
    const traces = [];
    const annotations = [];
    const lists = [];
    const width = Math.max(300, box.clientWidth - 70);
    const minGap = (rs.n_features * 12) / width; // ranks per label, so that rotated labels do not overlap
    for (const [dir, c] of Object.entries(rs.curves)) {
      traces.push({ x: c.x, y: c.y, mode: "lines", name: `${dir} set (ES ${fmt(c.es)})`, line: { color: colors[dir], width: 2 } });
      traces.push({ x: c.hit_ranks, y: c.hit_ranks.map(() => (dir === "up" ? 1 : 0)), mode: "markers", yaxis: "y2",
        marker: { symbol: "line-ns-open", size: 14, color: colors[dir] }, showlegend: false, text: c.hit_symbols,
        hovertemplate: `%{text}: ${dir} gene at rank %{x}<extra></extra>` });
      const le = new Set(c.leading_edge || []);
      const hits = c.hit_genes.map((g, i) => ({ g, s: c.hit_symbols[i], r: c.hit_ranks[i] })).filter((h) => le.has(h.g));
      lists.push({ dir, hits });
      let last = -Infinity;
      for (const h of hits.sort((a, b) => a.r - b.r)) {
        if (h.r - last < minGap) continue; // too close to the previous label: named in the list below the plot
        last = h.r;
        annotations.push({ x: h.r, y: dir === "up" ? 1 : 0, yref: "y2", xref: "x", text: esc(h.s), showarrow: false, textangle: -90,
          yanchor: dir === "up" ? "bottom" : "top", yshift: dir === "up" ? 8 : -8, font: { size: 10, color: colors[dir] }, name: "le-label" });
      }
    }
    box.replaceChildren();
    await Plotly.newPlot(box, traces, {
      margin: { l: 55, r: 10, t: 30, b: 50 }, height: 480, annotations,
      xaxis: { title: { text: window.innerWidth < 600 ? `rank (1 = most up, ${rs.n_features} = most down)` : `rank in the signature (1 = most up, ${rs.n_features} = most down)` },
        range: [0, rs.n_features], zeroline: false, anchor: "y2" },
      yaxis: { title: { text: "running sum" }, domain: [0.5, 1], zeroline: true },
      // hit strip: up ticks at 1 (labels above), down ticks at 0 (labels below, clear of the rank axis)
      yaxis2: { domain: [0, 0.4], range: [-3, 2.6], tickvals: [0, 1], ticktext: ["down", "up"], showgrid: false, zeroline: false },
      legend: { orientation: "h", x: 0, y: 1.12 },
    }, { displaylogo: false, responsive: true, displayModeBar: window.innerWidth < 600 ? false : "hover" });
    const genes = document.getElementById("rs-genes");
    if (genes) {
      genes.innerHTML = lists.filter((x) => x.hits.length).map((x) => `<p><b style="color:${colors[x.dir]}">Leading edge, ${x.dir} set (${x.hits.length}):</b> ` +
        x.hits.map((h) => `<span class="gene" title="gene ${esc(h.g)}, rank ${h.r}">${esc(h.s)}</span>`).join(" ") + "</p>").join("");
    }
    box.dataset.rendered = "1";
  } catch (err) { box.replaceChildren(el(`<p class="why">${esc(err.message)}</p>`)); } finally { box.classList.remove("busy"); }
}

async function renderDownloads(jobId, query, box) {
  try {
    const res = await api(`/jobs/${jobId}/downloads`);
    const sel = el(`<select id="dl-select" aria-label="file to download"></select>`);
    for (const f of res.files) sel.append(new Option(`${f.name} — ${f.description}`, f.name));
    const btn = el(`<button type="button" id="dl-button">Download</button>`);
    btn.addEventListener("click", () => download(`/jobs/${jobId}/downloads/${encodeURIComponent(sel.value)}`, `opencmap-${jobId.slice(0, 8)}-${sel.value}`, btn));
    const all = el(`<button type="button" id="dl-all" title="every file above in one .zip archive">All files (.zip)</button>`);
    all.addEventListener("click", () => download(`/jobs/${jobId}/download-all`, `opencmap-${jobId.slice(0, 8)}.zip`, all));
    const exp = el(`<select id="ex-select" aria-label="export the query">
      <option value="gmt">query as .gmt (up + down)</option><option value="grp-up">up genes as .grp</option><option value="grp-down">down genes as .grp</option></select>`);
    const exb = el(`<button type="button" id="ex-button">Export query</button>`);
    exb.addEventListener("click", () => {
      const [format, side] = exp.value.split("-");
      const stem = query.replace(/[^A-Za-z0-9_.-]/g, "_");
      const name = format === "gmt" ? `${stem}.gmt` : `${stem}_${side === "up" ? "up" : "dn"}.grp`;
      download(`/jobs/${jobId}/export?${new URLSearchParams({ format, side: side || "up", query })}`, name, exb);
    });
    box.replaceChildren(el(`<span class="dl-group"></span>`), el(`<span class="dl-group"></span>`));
    box.children[0].append("Files: ", sel, btn, all);
    box.children[1].append(exp, exb);
  } catch (err) { box.textContent = err.message; }
}

async function download(path, filename, button) {
  const text = button ? button.textContent : "";
  if (button) { button.disabled = true; button.textContent = "Preparing…"; }
  try {
    const res = await fetch(API + path, { headers: headers() });
    if (!res.ok) { showMessage(`download failed: ${res.status}`); return; }
    const blob = await res.blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = filename;
    document.body.append(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  } finally {
    if (button) { button.disabled = false; button.textContent = text; }
  }
}

// ------------------------------------------------------------------ jobs
async function renderJob(jobId) {
  navActive("jobs");
  const job = await api(`/jobs/${jobId}`);
  if (job.status === "done") { setHash(`/results/${jobId}`); return; }
  const pct = Math.round(100 * job.progress);
  const active = job.status === "queued" || job.status === "running";
  const page = el(`<section class="card"><h1>Job ${esc(jobId.slice(0, 8))}</h1>
    <p>${job.n_queries} ${job.n_queries === 1 ? "query" : "queries"}, metric ${esc(job.method || job.request.metric || "")} — <b class="status ${esc(job.status)}">${esc(job.status)}</b></p>
    <div class="progress" role="progressbar" aria-valuenow="${pct}" aria-valuemin="0" aria-valuemax="100"><div style="width:${pct}%"></div></div>
    ${job.error ? `<p class="why">${esc(job.error)}</p>` : ""}
    <div class="row">${active ? `<button type="button" id="job-cancel">Cancel this job</button>` : `<button type="button" id="job-rerun">Run it again</button>`}</div>
    <p class="muted">${active ? "This page refreshes by itself; the results open when the job is done." : ""}</p></section>`);
  view.replaceChildren(page);
  const cancel = page.querySelector("#job-cancel");
  if (cancel) cancel.addEventListener("click", async () => { cancel.disabled = true; await postJSON(`/jobs/${jobId}/cancel`, {}).catch((e) => showMessage(e.message)); route(); });
  const rerunBtn = page.querySelector("#job-rerun");
  if (rerunBtn) rerunBtn.addEventListener("click", () => rerun(job, rerunBtn));
  if (active) setTimeout(() => { if (params().path === `/jobs/${jobId}`) renderJob(jobId).catch((e) => showMessage(e.message)); }, 700);
}

async function rerun(job, button) {
  if (button) button.disabled = true;
  try {
    const info = await loadInfo();
    const limit = (info.limits && info.limits.max_sync_queries) || 1;
    if (job.n_queries > limit) {
      const j = await postJSON("/jobs", job.request);
      setHash(`/jobs/${j.id}`);
    } else {
      const res = await postJSON("/queries", job.request);
      setHash(`/results/${res.job.id}`);
    }
  } catch (err) { showMessage(`Re-run refused: ${err.message}`); } finally { if (button) button.disabled = false; }
}

async function renderJobs(q) {
  navActive("jobs");
  const offset = Number(q.get("offset") || 0);
  const res = await api(`/jobs?limit=25&offset=${offset}`);
  const rows = res.items.map((j) => {
    const names = j.queries.length ? j.queries.map((x) => x.name).slice(0, 3).join(", ") : (j.request.queries || []).map((x) => x.name).slice(0, 3).join(", ");
    const when = new Date(j.created * 1000).toLocaleString(undefined, { dateStyle: "short", timeStyle: "short" });
    const link = j.status === "done" ? `#/results/${j.id}` : `#/jobs/${j.id}`;
    const active = j.status === "queued" || j.status === "running";
    return `<tr data-job="${esc(j.id)}"><td><a href="${link}">${esc(j.id.slice(0, 8))}</a></td>
      <td class="status ${esc(j.status)}">${esc(j.status)}${j.status === "running" ? ` ${Math.round(100 * j.progress)}%` : ""}</td>
      <td class="actions">${active ? `<button type="button" data-act="cancel">Cancel</button>` : `<button type="button" data-act="rerun">Re-run</button>`}
        <button type="button" data-act="delete" class="danger-soft">Delete</button></td>
      <td class="wrap">${esc(names)}${j.n_queries > 3 ? " …" : ""}</td><td>${esc(j.method || j.request.metric || "")}</td><td>${j.n_queries}</td>
      <td>${esc(when)}</td><td>${esc(j.mode)}</td><td class="why wrap">${esc(j.error || "")}</td></tr>`;
  }).join("");
  const page = el(`<section class="card"><h1>Job history</h1>
    <div class="table-wrap"><table class="results jobs"><thead><tr><th>job</th><th>status</th><th>actions</th><th>queries</th><th>metric</th><th>n</th><th>submitted</th><th>mode</th><th>message</th></tr></thead>
    <tbody>${rows || `<tr><td colspan="9" class="muted">No jobs yet: run a query first.</td></tr>`}</tbody></table></div>
    <div class="pager">${res.total} jobs
      ${offset > 0 ? `<a href="#/jobs?offset=${Math.max(0, offset - 25)}">◀ newer</a>` : ""}
      ${offset + 25 < res.total ? `<a href="#/jobs?offset=${offset + 25}">older ▶</a>` : ""}</div></section>`);
  const byId = Object.fromEntries(res.items.map((j) => [j.id, j]));
  page.querySelectorAll("button[data-act]").forEach((b) => b.addEventListener("click", async () => {
    const id = b.closest("tr").dataset.job;
    const act = b.dataset.act;
    if (act === "rerun") return rerun(byId[id], b);
    if (act === "cancel") {
      b.disabled = true;
      try { await postJSON(`/jobs/${id}/cancel`, {}); } catch (err) { showMessage(err.message); }
      return route();
    }
    if (act === "delete" && !b.classList.contains("confirm")) { // two steps: no accidental deletes
      b.classList.add("confirm");
      b.textContent = "Really delete?";
      setTimeout(() => { b.classList.remove("confirm"); b.textContent = "Delete"; }, 5000);
      return;
    }
    b.disabled = true;
    try { await api(`/jobs/${id}`, { method: "DELETE" }); } catch (err) { showMessage(err.message); }
    route();
  }));
  view.replaceChildren(page);
}

// ------------------------------------------------------------------ detail pages
function metaTable(obj, skip = []) {
  return `<table class="meta">${Object.entries(obj).filter(([k, v]) => !skip.includes(k) && typeof v !== "object")
    .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(fmt(v))}</td></tr>`).join("")}</table>`;
}

function scoreLine(row, what) {
  if (!row) return "";
  const parts = [["tau", "τ", 1], ["ncs", "NCS", 3], ["fdr_q", "FDR q", 4], ["wtcs", "WTCS", 3]].filter(([k]) => typeof row[k] === "number")
    .map(([k, l, d]) => `<span class="score ${scoreClass(row[k])}"><span class="muted">${l}</span> ${fmt(row[k], d)}</span>`);
  return `<div class="scores" id="item-scores"><span>${esc(what)}</span> ${parts.join(" ")}</div>`;
}

function backLink(q) {
  return q.get("job") ? `<p><a href="#/results/${encodeURIComponent(q.get("job"))}?query=${encodeURIComponent(q.get("query") || "")}">◀ back to the results of ${esc(q.get("query") || "the query")}</a></p>` : "";
}

async function itemScores(kind, id, q) {
  if (!q.get("job")) return null;
  try {
    return await api(`/jobs/${encodeURIComponent(q.get("job"))}/scores?${new URLSearchParams({ kind, id, query: q.get("query") || "" })}`);
  } catch (err) { return { error: err.message }; }
}

async function renderSignature(sigId, q) {
  navActive("");
  const [sig, sc] = await Promise.all([api(`/signatures/${encodeURIComponent(sigId)}`), itemScores("sig", sigId, q)]);
  const row = sc && sc.sig && sc.sig[0];
  const detail = row ? `<table class="meta scores-table">${[["tau", "τ"], ["ncs", "NCS"], ["fdr_q", "FDR q"], ["wtcs", "WTCS"], ["es_up", "ES up"], ["es_dn", "ES down"], ["leadf_up", "leading-edge fraction up"], ["leadf_dn", "leading-edge fraction down"]]
    .filter(([k]) => k in row).map(([k, l]) => `<tr><th>${l}</th><td class="${scoreClass(row[k])}">${esc(fmt(row[k], k === "fdr_q" ? 4 : 3))}</td></tr>`).join("")}</table>` : "";
  const page = el(`<section class="card"><h1>Signature ${esc(sigId)}</h1>
    ${backLink(q)}
    <p>Perturbagen <a href="#/pert/${encodeURIComponent(sig.pert_id)}${ctx(q.get("job"), q.get("query"))}">${esc(sig.pert_iname || sig.pert_id)}</a>
      (${esc(typeLabel(sig.pert_type))}) in cell line ${esc(sig.cell_id)}.</p>
    ${row ? `${scoreLine(row, `Scores for query ${q.get("query") || ""}:`)}<h2>Scores for this query</h2>${detail}` : sc && sc.error ? `<p class="why">${esc(sc.error)}</p>` : ""}
    <h2>Metadata</h2>${metaTable(sig)}
    ${q.get("job") ? `<h2>Running sum of query ${esc(q.get("query") || "")}</h2><div id="running-sum" class="plot rs"></div><div id="rs-genes" class="le-genes"></div>` : ""}</section>`);
  view.replaceChildren(page);
  if (q.get("job")) await renderRunningSum(q.get("job"), q.get("query"), sigId, page.querySelector("#running-sum"));
}

const QUALITY = [["tas", "TAS"], ["distil_tas", "TAS"], ["distil_cc_q75", "cc q75"], ["cc_q75", "cc q75"], ["distil_nsample", "replicates"],
  ["nsample", "replicates"], ["pct_self_rank_q25", "self-rank q25 %"], ["is_exemplar_sig", "exemplar"]];
function numeric(text) { const m = String(text ?? "").match(/-?\d+(\.\d+)?/); return m ? Number(m[0]) : Infinity; }
function median(xs) { const s = [...xs].sort((a, b) => a - b); const n = s.length; return n ? (n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2) : NaN; }

function doseTimeGrid(sigs, scored) {
  const dose = (s) => String(s.pert_idose ?? s.pert_dose ?? "—");
  const time = (s) => String(s.pert_itime ?? s.pert_time ?? "—");
  const doses = [...new Set(sigs.map(dose))].sort((a, b) => numeric(a) - numeric(b) || a.localeCompare(b));
  const times = [...new Set(sigs.map(time))].sort((a, b) => numeric(a) - numeric(b) || a.localeCompare(b));
  const cell = (d, t) => {
    const here = sigs.filter((s) => dose(s) === d && time(s) === t);
    if (!here.length) return `<td class="empty">—</td>`;
    const tip = here.map((s) => `${s.cell_id}${typeof s.tau === "number" ? `: τ ${fmt(s.tau, 1)}` : ""}`).join("\n");
    if (!scored) return `<td title="${esc(tip)}">${here.length} sig.</td>`;
    const taus = here.map((s) => s.tau).filter((v) => typeof v === "number");
    const m = median(taus);
    return `<td style="${tauColor(m)}" title="${esc(tip)}"><b>${fmt(m, 1)}</b> <span class="muted">(${here.length})</span></td>`;
  };
  return `<div class="table-wrap"><table class="results dose-time" id="dose-time"><thead><tr><th>dose \\ time</th>${times.map((t) => `<th>${esc(t)}</th>`).join("")}</tr></thead>
    <tbody>${doses.map((d) => `<tr><th>${esc(d)}</th>${times.map((t) => cell(d, t)).join("")}</tr>`).join("")}</tbody></table></div>
    <p class="muted small">${scored ? "Each cell: median τ of the signatures at that dose and time over the cell lines (number of signatures); hover for each cell line." : "Signatures per dose and time; open it from a result to see the scores."}</p>`;
}

async function renderPerturbagen(pertId, q) {
  navActive("");
  const [p, sc] = await Promise.all([api(`/perturbagens/${encodeURIComponent(pertId)}`), itemScores("pert", pertId, q)]);
  const scored = Boolean(sc && sc.sig && sc.sig.length);
  const byId = scored ? Object.fromEntries(sc.sig.map((r) => [r.sig_id, r])) : {};
  const sigs = p.signatures.map((s) => ({ ...s, ...(byId[s.sig_id] || {}) }));
  const sortKey = q.get("sort") || (scored ? "tau" : "cell_id");
  const desc = (q.get("order") || "desc") === "desc";
  sigs.sort((a, b) => {
    if (sortKey === "cell_id") return String(a.cell_id).localeCompare(String(b.cell_id)) || numeric(a.pert_idose) - numeric(b.pert_idose);
    const x = a[sortKey], y = b[sortKey];
    const nx = typeof x === "number" ? x : -Infinity, ny = typeof y === "number" ? y : -Infinity;
    return desc ? ny - nx : nx - ny;
  });
  const quality = [];
  for (const [k, l] of QUALITY) if (sigs.some((s) => k in s) && !quality.some(([, l2]) => l2 === l)) quality.push([k, l]);
  const c2 = ctx(q.get("job"), q.get("query"));
  const cols = [["sig_id", "signature"], ...(scored ? [["tau", "τ"], ["ncs", "NCS"]] : []), ["cell_id", "cell line"], ["dose", "dose"],
    ["time", "time"], ...(scored ? [["fdr_q", "FDR q"]] : []), ...quality]; // scores first: visible on a phone without scrolling
  const rows = sigs.map((s) => `<tr>${cols.map(([k]) => {
    if (k === "sig_id") return `<td><a href="#/sig/${encodeURIComponent(s.sig_id)}${c2}">${esc(s.sig_id)}</a></td>`;
    if (k === "dose") return `<td>${esc(s.pert_idose ?? s.pert_dose ?? "")}</td>`;
    if (k === "time") return `<td>${esc(s.pert_itime ?? s.pert_time ?? "")}</td>`;
    return `<td class="${["tau", "ncs"].includes(k) ? scoreClass(s[k]) : ""}">${esc(fmt(s[k], k === "tau" ? 1 : k === "fdr_q" ? 4 : 3))}</td>`;
  }).join("")}</tr>`).join("");
  const sortLink = (key, text) => {
    const nq = new URLSearchParams(q); nq.set("sort", key); nq.set("order", key === sortKey && desc ? "asc" : "desc");
    return `<a href="#/pert/${encodeURIComponent(pertId)}?${nq}" class="${key === sortKey ? "active" : ""}">${text}${key === sortKey ? (desc ? " ▼" : " ▲") : ""}</a>`;
  };
  const pcls = (p.pcls || "").split("|").filter(Boolean).map((x) => `<a href="#/pcl/${encodeURIComponent(x)}${c2}">${esc(x)}</a>`).join(", ");
  const summary = scored && sc.pert_summary[0];
  const perCell = scored ? sc.pert_cell.map((r) => `<tr><td>${esc(r.cell_id)}</td><td class="${scoreClass(r.tau)}">${fmt(r.tau, 1)}</td><td class="${scoreClass(r.ncs)}">${fmt(r.ncs)}</td><td>${esc(r.n_sigs ?? "")}</td></tr>`).join("") : "";
  view.replaceChildren(el(`<section class="card"><h1>${esc(p.pert_iname || pertId)} <span class="muted">${esc(pertId)}</span></h1>
    ${backLink(q)}
    <p><span class="type-tag ${isControl(p.pert_type) ? "ctl" : ""}" title="${esc(p.pert_type)}">${esc(typeLabel(p.pert_type))}</span>
      ${p.moa && p.moa !== "-666" ? ` MOA: ${esc(p.moa)}.` : ""} Perturbagen classes: ${pcls || "none"}</p>
    ${summary ? scoreLine(summary, `Summary for query ${q.get("query") || ""} over ${summary.n_cells ?? ""} cell lines:`) : sc && sc.error ? `<p class="why">${esc(sc.error)}</p>` : ""}
    ${perCell ? `<h2>Per cell line</h2><div class="table-wrap"><table class="results" id="pert-cells"><thead><tr><th>cell line</th><th>τ</th><th>NCS</th><th>signatures</th></tr></thead><tbody>${perCell}</tbody></table></div>` : ""}
    <h2>Dose × time</h2>${doseTimeGrid(sigs, scored)}
    <h2>Signatures (${p.signatures.length})</h2>
    <p class="sort-links">Sort by ${scored ? `${sortLink("tau", "τ")} · ${sortLink("ncs", "NCS")} · ` : ""}${sortLink("cell_id", "cell line")}
      ${quality.some(([k]) => k.includes("tas")) ? ` · ${sortLink(quality.find(([k]) => k.includes("tas"))[0], "TAS")}` : ""}</p>
    <div class="table-wrap"><table class="results" id="pert-sigs"><thead><tr>${cols.map(([, l]) => `<th>${esc(l)}</th>`).join("")}</tr></thead><tbody>${rows}</tbody></table></div>
    <h2>Metadata</h2>${metaTable(p, ["signatures", "pcls"])}</section>`));
}

async function renderPcl(name, q) {
  navActive("browse");
  const [p, sc] = await Promise.all([api(`/pcls/${encodeURIComponent(name)}`), itemScores("pcl", name, q)]);
  const c2 = ctx(q.get("job"), q.get("query"));
  const present = new Set(p.perturbagens.map((x) => String(x.pert_id)));
  const rows = p.perturbagens.map((x) => `<tr><td><a href="#/pert/${encodeURIComponent(x.pert_id)}${c2}">${esc(x.pert_iname || x.pert_id)}</a></td>
    <td>${esc(x.pert_id)}</td><td>${esc(typeLabel(x.pert_type))}</td><td>${esc(fmt(x.moa ?? ""))}</td><td>${esc(x.n_sigs)}</td></tr>`).join("");
  const missing = p.members.filter((m) => !present.has(String(m)));
  const summary = sc && sc.pcl_summary && sc.pcl_summary[0];
  const perCell = sc && sc.pcl_cell ? sc.pcl_cell.map((r) => `<tr><td>${esc(r.cell_id)}</td><td class="${scoreClass(r.tau)}">${fmt(r.tau, 1)}</td><td class="${scoreClass(r.ncs)}">${fmt(r.ncs)}</td></tr>`).join("") : "";
  view.replaceChildren(el(`<section class="card"><h1>PCL ${esc(name)}</h1>
    ${backLink(q)}
    <p>${p.members.length} members, ${p.perturbagens.length} in this store.</p>
    ${summary ? scoreLine(summary, `Summary for query ${q.get("query") || ""}:`) : sc && sc.error ? `<p class="why">${esc(sc.error)}</p>` : ""}
    ${perCell ? `<h2>Per cell line</h2><div class="table-wrap"><table class="results" id="pcl-cells"><thead><tr><th>cell line</th><th>τ</th><th>NCS</th></tr></thead><tbody>${perCell}</tbody></table></div>` : ""}
    <h2>Members</h2>
    <div class="table-wrap"><table class="results" id="pcl-members"><thead><tr><th>name</th><th>perturbagen id</th><th>type</th><th>MOA</th><th>signatures</th></tr></thead><tbody>${rows}</tbody></table></div>
    ${missing.length ? `<p class="muted">Not in this store: ${missing.map(esc).join(", ")}</p>` : ""}</section>`));
}

async function renderBrowse(q) {
  navActive("browse");
  const text = q.get("q") || "";
  const offset = Number(q.get("offset") || 0);
  const [perts, pcls] = await Promise.all([
    api(`/perturbagens?limit=50&offset=${offset}&q=${encodeURIComponent(text)}`), api(`/pcls?limit=1000`)]);
  const rows = perts.items.map((x) => `<tr><td><a href="#/pert/${encodeURIComponent(x.pert_id)}">${esc(x.pert_id)}</a></td><td>${esc(x.pert_iname)}</td>
    <td><span class="type-tag ${isControl(x.pert_type) ? "ctl" : ""}" title="${esc(x.pert_type)}">${esc(typeLabel(x.pert_type))}</span></td><td>${esc(fmt(x.moa ?? ""))}</td><td>${x.n_sigs}</td><td>${x.n_cells}</td></tr>`).join("");
  const page = el(`<section class="card"><h1>Browse the store</h1>
    <input id="browse-q" type="search" aria-label="search perturbagens" placeholder="search perturbagens: name, id, MOA" value="${esc(text)}">
    <div class="table-wrap"><table class="results"><thead><tr><th>perturbagen</th><th>name</th><th>type</th><th>MOA</th><th>signatures</th><th>cells</th></tr></thead><tbody>${rows}</tbody></table></div>
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

// ------------------------------------------------------------------ guide
function renderGuide() {
  navActive("guide");
  view.replaceChildren(document.getElementById("tpl-guide").content.cloneNode(true));
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

let ROUTE_SEQ = 0;
let FOCUS = null; // the text field that had the focus when the view was re-rendered
function restoreFocus() {
  if (!FOCUS) return;
  const again = document.getElementById(FOCUS.id);
  if (again && again !== document.activeElement && ["INPUT", "TEXTAREA"].includes(again.tagName)) {
    again.focus();
    try { if (typeof FOCUS.caret === "number") again.setSelectionRange(FOCUS.caret, FOCUS.caret); } catch (e) { /* not a text input */ }
  }
  FOCUS = null;
}
async function route() {
  const { path, query } = params();
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const seq = ++ROUTE_SEQ;
  const act = document.activeElement;
  FOCUS = act && act.id && ["INPUT", "TEXTAREA"].includes(act.tagName) ? { id: act.id, caret: act.selectionStart } : null;
  view.classList.add("stale");
  view.setAttribute("aria-busy", "true");
  try {
    if (parts.length === 0) await renderQuery();
    else if (parts[0] === "results" && parts[1]) await renderResults(parts[1], query);
    else if (parts[0] === "jobs" && parts[1]) await renderJob(parts[1]);
    else if (parts[0] === "jobs") await renderJobs(query);
    else if (parts[0] === "sig" && parts[1]) await renderSignature(parts[1], query);
    else if (parts[0] === "pert" && parts[1]) await renderPerturbagen(parts[1], query);
    else if (parts[0] === "pcl" && parts[1]) await renderPcl(parts[1], query);
    else if (parts[0] === "browse") await renderBrowse(query);
    else if (parts[0] === "guide") renderGuide();
    else view.replaceChildren(el(`<section class="card"><h1>Page not found</h1><p>There is no page at this address.</p>
      <p><a href="#/">Start a new query</a> · <a href="#/jobs">Job history</a> · <a href="#/guide">How to read the results</a></p></section>`));
  } catch (err) {
    showMessage(err.status === 404 ? `Not found: ${err.message}` : err.message);
  } finally {
    if (seq === ROUTE_SEQ) {
      view.classList.remove("stale");
      view.removeAttribute("aria-busy");
      restoreFocus();
    }
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
