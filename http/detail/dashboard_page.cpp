#include "bg_jobs/http/detail/dashboard_page.hpp"

namespace bg_jobs::detail {

namespace {

// Every value from the store is put into the page with textContent, never
// as markup, so that a payload holding <script> shows as text.
const char page[] = R"PAGE(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="csrf" content="@CSRF@">
<meta name="read-only" content="@READONLY@">
<title>bg_jobs</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 0; color: #1d2330; background: #f5f6f8; }
header { background: #1d2330; color: #fff; padding: 10px 20px; display: flex; gap: 16px; align-items: baseline; }
header h1 { font-size: 18px; margin: 0; }
main { padding: 16px 20px; display: grid; gap: 16px; }
section { background: #fff; border-radius: 6px; padding: 12px 16px; box-shadow: 0 1px 2px #0001; }
h2 { font-size: 15px; margin: 0 0 8px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e4e6ea; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr[data-id] { cursor: pointer; }
tr[data-id]:hover { background: #eef3ff; }
.badge { padding: 1px 6px; border-radius: 8px; font-size: 12px; background: #e4e6ea; }
.paused { background: #ffe3b3; }
.state-failed, .state-cancelled { color: #a32020; }
.state-succeeded { color: #1a7f37; }
button { font: inherit; padding: 2px 10px; cursor: pointer; }
pre { background: #f5f6f8; padding: 8px; overflow: auto; max-height: 300px; }
.controls { display: flex; gap: 8px; margin-bottom: 8px; align-items: center; }
#error { color: #a32020; }
.muted { color: #69707d; }
.full { background: #ffd7d5; }
svg rect.ok { fill: #2da44e; } svg rect.bad { fill: #cf222e; }
#wf-graph rect { stroke: #1d2330; stroke-width: 1; rx: 4; }
#wf-graph rect.task-succeeded { fill: #b7e4c7; } #wf-graph rect.task-failed { fill: #ffb3b3; }
#wf-graph rect.task-cancelled { fill: #d8dbe0; } #wf-graph rect.task-ready { fill: #b3d4ff; }
#wf-graph rect.task-blocked { fill: #ffffff; } #wf-graph rect.task-held { fill: #ffd591; }
#wf-graph rect.task-doomed { fill: #d8dbe0; } #wf-graph rect.callback { stroke-dasharray: 4 2; }
#wf-graph path { fill: none; stroke: #69707d; stroke-width: 1.2; }
#wf-graph text { font: 12px system-ui, sans-serif; pointer-events: none; }
#wf-graph g { cursor: pointer; }
</style>
</head>
<body>
<header><h1>bg_jobs</h1><span id="updated" class="muted"></span><span id="mode"></span><span id="error"></span></header>
<main>
<section><h2>Queues</h2>
<table id="queues"><thead><tr><th>queue</th><th class="num">waiting</th><th class="num">scheduled</th><th class="num">running</th><th class="num">succeeded</th><th class="num">failed</th><th class="num">cancelled</th><th class="num">lag</th><th>state</th><th></th></tr></thead><tbody></tbody></table>
</section>
<section id="limits" hidden><h2>Concurrency limits</h2><div id="limit-queues"></div></section>
<section><h2>Schedules</h2>
<table id="schedules"><thead><tr><th>schedule</th><th>job</th><th>when</th><th>overlap</th><th>missed</th><th>from</th><th>last run</th><th>state</th><th></th></tr></thead><tbody></tbody></table>
</section>
<section><h2>Finished per minute, last hour</h2><svg id="chart" width="100%" height="80" viewBox="0 0 600 80" preserveAspectRatio="none"></svg>
<div class="muted" id="chart-total"></div></section>
<section><h2>Jobs</h2>
<div class="controls">
<select id="state"><option>waiting</option><option>scheduled</option><option>running</option><option>succeeded</option><option selected>failed</option><option>cancelled</option></select>
<input id="name" placeholder="job name"><input id="tag" placeholder="tag"><input id="find" placeholder="job id" size="8"><button id="go">show</button>
<button id="more">next page</button><span id="count" class="muted"></span>
</div>
<table id="jobs"><thead><tr><th class="num">id</th><th>name</th><th>state</th><th class="num">attempts</th><th class="num">priority</th><th>time</th><th>error</th></tr></thead><tbody></tbody></table>
</section>
<section><h2>Workflows</h2>
<div class="controls"><select id="wf-state"><option value="">any state</option><option>running</option><option>succeeded</option><option>failed</option><option>cancelled</option></select></div>
<table id="workflows"><thead><tr><th class="num">id</th><th>name</th><th>state</th><th class="num">tasks</th><th class="num">succeeded</th><th class="num">failed</th><th class="num">cancelled</th><th class="num">held</th><th>started</th><th class="num">elapsed</th></tr></thead><tbody></tbody></table>
</section>
<section id="workflow" hidden><h2>Workflow <span id="wf-id"></span> <span id="wf-name" class="muted"></span> <span id="wf-badge" class="badge"></span></h2>
<div class="controls"><button id="wf-retry">retry</button><button id="wf-cancel">cancel</button><span id="wf-note" class="muted"></span></div>
<svg id="wf-graph" width="0" height="0"></svg>
</section>
<section id="job" hidden><h2>Job <span id="job-id"></span></h2>
<div class="controls"><button id="retry">retry</button><button id="cancel">cancel</button><button id="delete">delete</button></div>
<table id="job-fields"></table>
<div id="job-progress" hidden><progress max="1"></progress> <span></span></div>
<h2>Payload</h2><pre id="job-payload"></pre>
<div id="job-output-box" hidden><h2>Output</h2><pre id="job-output"></pre></div>
<h2>Errors</h2><table id="job-errors"><tbody></tbody></table>
</section>
</main>
<script>
"use strict";
const csrf = document.querySelector('meta[name=csrf]').content;
const readOnly = document.querySelector('meta[name="read-only"]').content === "true";
const $ = (id) => document.getElementById(id);
let after = "", selected = null;
function el(tag, text, cls) { const e = document.createElement(tag); if (text !== undefined) e.textContent = String(text); if (cls) e.className = cls; return e; }
function when(ms) { return ms == null ? "" : new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z"); }
function showError(msg) { $("error").textContent = msg || ""; }
async function api(path, opts) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin" }, opts || {}));
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.message || ("HTTP " + r.status));
  return body;
}
async function act(path) {
  try { await api(path, { method: "POST", headers: { "X-CSRF-Token": csrf } }); showError(""); }
  catch (e) { showError(e.message); }
  await refresh(); if (selected) await showJob(selected);
}
async function loadStats() {
  const s = await api("/api/stats");
  const body = $("queues").tBodies[0]; body.replaceChildren();
  for (const q of s.queues) {
    const tr = el("tr"); tr.dataset.queue = q.queue;
    tr.append(el("td", q.queue));
    for (const k of ["waiting", "scheduled", "running", "succeeded", "failed", "cancelled"]) {
      const est = q.counts.history_estimated && ["succeeded", "failed", "cancelled"].includes(k);
      const td = el("td", (est ? "\u2248" : "") + q.counts[k], "num count-" + k);
      if (est) td.title = "estimated from the store's statistics";
      tr.append(td);
    }
    tr.append(el("td", (q.lag_ms / 1000).toFixed(1) + " s", "num"));
    const st = el("td"); st.append(el("span", q.paused ? "paused" : "running", "badge state " + (q.paused ? "paused" : "")));
    if (q.nodes.length === 0) { const b = el("span", "no node", "badge paused"); b.title = "no live node runs this queue: its jobs wait"; st.append(" ", b); }
    tr.append(st);
    const td = el("td");
    if (!readOnly) { const b = el("button", q.paused ? "resume" : "pause", q.paused ? "resume" : "pause"); b.onclick = () => act("/api/queues/" + encodeURIComponent(q.queue) + "/" + (q.paused ? "resume" : "pause")); td.append(b); }
    tr.append(td); body.append(tr);
  }
  $("updated").textContent = "updated " + when(s.at);
  showLimits(s.queues.filter(q => q.limits && q.limits.length));
}
function showLimits(queues) {
  const box = $("limit-queues"); box.replaceChildren();
  $("limits").hidden = queues.length === 0;
  for (const q of queues) {
    const h = el("h2"); h.append(el("span", q.queue), " ",
      el("span", q.limits.map(l => l.kind === "key" ? "key " + l.key + ": " + l.max_running : l.kind === "rate" ? "rate: " + l.key : l.kind + ": " + l.max_running).join(", "), "muted"),
      " ", el("span", q.keys_full + " keys full, " + q.waiting_on_limit + " jobs waiting on them", "badge" + (q.keys_full ? " full" : "")));
    const t = el("table"); t.className = "limit-keys"; t.dataset.queue = q.queue;
    const head = el("tr"); for (const c of ["key", "running", "waiting", "limit"]) head.append(el("th", c, c === "key" ? "" : "num"));
    t.append(head);
    for (const k of q.keys) {
      const tr = el("tr"); if (k.full) tr.className = "full";
      tr.append(el("td", k.key), el("td", k.running, "num"), el("td", k.waiting, "num"), el("td", k.max_running || "none", "num"));
      t.append(tr);
    }
    box.append(h, t);
    if (q.blocked && q.blocked.length) {
      const b = el("table"); b.className = "blocked-keys"; b.dataset.queue = q.queue;
      const bh = el("tr"); for (const c of ["blocked key", "failed job", "waiting behind"]) bh.append(el("th", c, c === "blocked key" ? "" : "num"));
      b.append(bh);
      for (const k of q.blocked) {
        const tr = el("tr", undefined, "full");
        const id = el("td", k.failed_job, "num"); id.style.cursor = "pointer"; id.onclick = () => showJob(k.failed_job);
        tr.append(el("td", k.key), id, el("td", k.waiting, "num"));
        b.append(tr);
      }
      box.append(b);
    }
    if (q.rate) {
      const r = q.rate;
      const rh = el("p"); rh.append(el("span", "rate limit " + r.name, "muted"), " ",
        el("span", r.allowed + " per " + r.period_ms + " ms, burst " + r.burst, "badge"));
      const rt = el("table"); rt.className = "rate-keys"; rt.dataset.queue = q.queue;
      const rhd = el("tr"); for (const c of ["rate key", "starts available", "blocked for ms"]) rhd.append(el("th", c, c === "rate key" ? "" : "num"));
      rt.append(rhd);
      for (const k of r.keys) {
        const tr = el("tr", undefined, k.blocked_ms > 0 || k.available === 0 ? "full" : "");
        tr.append(el("td", k.key === "" ? "(no key)" : k.key), el("td", k.available, "num"), el("td", k.blocked_ms, "num"));
        rt.append(tr);
      }
      box.append(rh, rt);
    }
  }
}
async function loadChart() {
  const t = await api("/api/throughput");
  const svg = $("chart"); svg.replaceChildren();
  const now = Date.now(), start = now - 3600000;
  const max = Math.max(1, ...t.buckets.map(b => b.succeeded + b.failed));
  let total = 0;
  for (const b of t.buckets) {
    const x = (b.start - start) / 3600000 * 600, w = 600 / 60 - 1;
    const hOk = b.succeeded / max * 78, hBad = b.failed / max * 78; total += b.succeeded + b.failed;
    for (const [h, y, cls, n] of [[hOk, 80 - hOk, "ok", b.succeeded], [hBad, 80 - hOk - hBad, "bad", b.failed]]) {
      const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      r.setAttribute("x", x); r.setAttribute("y", y); r.setAttribute("width", w); r.setAttribute("height", h); r.setAttribute("class", cls);
      const tip = document.createElementNS("http://www.w3.org/2000/svg", "title"); tip.textContent = when(b.start) + ": " + n + (cls === "ok" ? " succeeded" : " failed"); r.append(tip);
      svg.append(r);
    }
  }
  $("chart-total").textContent = total + " jobs finished in the last hour";
}
async function loadJobs(append) {
  const q = new URLSearchParams({ state: $("state").value, limit: "25" });
  if ($("name").value) q.set("name", $("name").value);
  if ($("tag").value) q.set("tag", $("tag").value);
  if (append && after) q.set("after", after);
  const page = await api("/api/jobs?" + q);
  const body = $("jobs").tBodies[0]; if (!append) body.replaceChildren();
  for (const j of page.jobs) {
    const tr = el("tr"); tr.dataset.id = j.id;
    tr.append(el("td", j.id, "num"), el("td", j.name), el("td", j.state, "state-" + j.state), el("td", j.attempts, "num"), el("td", j.priority, "num"),
      el("td", when(j.finished_at != null ? j.finished_at : (j.reserved_at != null ? j.reserved_at : j.available_at))), el("td", j.error || ""));
    tr.onclick = () => showJob(j.id); body.append(tr);
  }
  after = page.next; $("more").disabled = !after;
  $("count").textContent = body.rows.length + " shown" + (after ? ", more" : "");
}
// Encrypted values (see builder::with_encryption) show as such.
function sealed(v) { return v !== null && typeof v === "object" && !Array.isArray(v) && v["$bg_jobs_sealed"] === 1 && typeof v.key === "string"; }
function shownSealed(v) {
  if (sealed(v)) return "(encrypted with key '" + v.key + "')";
  if (v !== null && typeof v === "object" && !Array.isArray(v)) { const o = {}; for (const k of Object.keys(v)) o[k] = sealed(v[k]) ? "(encrypted with key '" + v[k].key + "')" : v[k]; return o; }
  return v;
}
async function showJob(id) {
  try {
    const j = await api("/api/jobs/" + encodeURIComponent(id)); selected = j.id;
    $("job").hidden = false; $("job-id").textContent = j.id;
    const f = $("job-fields"); f.replaceChildren();
    for (const [k, v] of [["name", j.name], ["state", j.state], ["attempts", j.attempts], ["priority", j.priority], ["created", when(j.created_at)], ["available", when(j.available_at)],
      ["reserved", when(j.reserved_at)], ["reserved by", j.reserved_by || ""], ["finished", when(j.finished_at)], ["error", j.error || ""], ["cancel asked", j.cancel_reason || ""],
      ["tags", (j.tags || []).join(", ")], ["traceparent", j.traceparent || ""], ["tracestate", j.tracestate || ""],
      ["meta", j.meta ? JSON.stringify(shownSealed(j.meta)) : ""]]) {
      const tr = el("tr"); tr.append(el("th", k), el("td", v)); f.append(tr);
    }
    const p = $("job-progress"); p.hidden = !j.progress;
    if (j.progress) {
      p.querySelector("progress").value = j.progress.fraction;
      p.querySelector("span").textContent = (j.progress.fraction * 100).toFixed(1) + "% (attempt " + j.progress.attempt + ", " + when(j.progress.at) + ")" + (j.progress.text ? ": " + j.progress.text : "");
    }
    $("job-payload").textContent = JSON.stringify(shownSealed(j.payload), null, 2);
    $("job-output-box").hidden = j.output === undefined || j.output === null;
    $("job-output").textContent = j.output === undefined || j.output === null ? "" : JSON.stringify(j.output, null, 2);
    const e = $("job-errors").tBodies[0]; e.replaceChildren();
    for (const x of j.errors) { const tr = el("tr"); tr.append(el("td", "attempt " + x.attempt), el("td", when(x.at)), el("td", x.error)); e.append(tr); }
    $("retry").hidden = readOnly || !["failed", "cancelled"].includes(j.state);
    $("cancel").hidden = readOnly || !["waiting", "scheduled", "running"].includes(j.state);
    $("delete").hidden = readOnly || j.state === "running";
    showError("");
  } catch (err) { showError(err.message); }
}
async function loadSchedules() {
  const all = await api("/api/schedules");
  const body = $("schedules").tBodies[0]; body.replaceChildren();
  for (const x of all) {
    const d = x.definition, tr = el("tr"); tr.dataset.schedule = x.name;
    const spec = x.problem ? "unreadable: " + x.problem : d.cron ? d.cron + (d.time_zone ? " in " + d.time_zone : "") : "every " + d.every_ms + " ms";
    const last = el("td");
    if (x.last) { const a = el("span", when(Date.parse(x.last.at)) + " (" + x.last.state + ")"); a.style.cursor = "pointer"; a.onclick = () => showJob(x.last.job_id); last.append(a); } else last.append("-");
    const st = el("td"); st.append(el("span", x.paused ? "paused" : "active", "badge state " + (x.paused ? "paused" : "")));
    tr.append(el("td", x.name), el("td", d.job || ""), el("td", spec), el("td", d.overlap || ""), el("td", d.missed || ""),
      el("td", x.declared ? "code" : "run time"), last, st);
    const td = el("td");
    if (!readOnly && !x.problem) {
      const base = "/api/schedules/" + encodeURIComponent(x.name) + "/";
      const run = el("button", "run now", "trigger"); run.onclick = () => act(base + "trigger");
      const p = el("button", x.paused ? "resume" : "pause", x.paused ? "resume" : "pause"); p.onclick = () => act(base + (x.paused ? "resume" : "pause"));
      td.append(run, " ", p);
    }
    tr.append(td); body.append(tr);
  }
}
function elapsed(w) { const end = w.finished_at != null ? w.finished_at : Date.now(); return ((end - w.created_at) / 1000).toFixed(1) + " s"; }
async function loadWorkflows() {
  const q = new URLSearchParams({ limit: "25" });
  if ($("wf-state").value) q.set("state", $("wf-state").value);
  const page = await api("/api/workflows?" + q);
  const body = $("workflows").tBodies[0]; body.replaceChildren();
  for (const w of page.workflows) {
    const tr = el("tr"); tr.dataset.id = w.id; tr.dataset.workflow = w.id;
    const st = el("td"); st.append(el("span", w.state, "state-" + w.state));
    if (w.stuck) { const b = el("span", "stuck", "badge paused"); b.title = "a task is held by a parent that did not succeed"; st.append(" ", b); }
    tr.append(el("td", w.id, "num"), el("td", w.name), st, el("td", w.total, "num"), el("td", w.succeeded, "num"), el("td", w.failed, "num"),
      el("td", w.cancelled, "num"), el("td", w.held, "num"), el("td", when(w.created_at)), el("td", elapsed(w), "num"));
    tr.onclick = () => showWorkflow(w.id); body.append(tr);
  }
}
let selectedWorkflow = null;
const SVG = "http://www.w3.org/2000/svg";
function svgEl(tag, attrs) { const e = document.createElementNS(SVG, tag); for (const k of Object.keys(attrs || {})) e.setAttribute(k, attrs[k]); return e; }
// Tasks in columns by depth (a task one column right of its deepest
// parent), callbacks in a column of their own after the last.
function drawWorkflow(w) {
  const svg = $("wf-graph"); svg.replaceChildren();
  const limit = 300, tasks = w.tasks.slice(0, limit);
  $("wf-note").textContent = w.tasks.length > limit ? "the first " + limit + " of " + w.tasks.length + " tasks are drawn" : "";
  const byName = new Map(tasks.map(t => [t.name, t]));
  const depth = new Map();
  const depthOf = (t, seen) => {
    if (depth.has(t.name)) return depth.get(t.name);
    if (seen.has(t.name)) return 0;
    seen.add(t.name);
    let d = 0;
    for (const a of t.after) { const p = byName.get(a.parent); if (p) d = Math.max(d, depthOf(p, seen) + 1); }
    depth.set(t.name, d); return d;
  };
  let last = 0;
  for (const t of tasks) if (!t.name.startsWith("@")) last = Math.max(last, depthOf(t, new Set()));
  for (const t of tasks) if (t.name.startsWith("@")) depth.set(t.name, last + 1);
  const rows = new Map(), at = new Map(), W = 140, H = 28, DX = 180, DY = 40;
  for (const t of tasks) { const d = depth.get(t.name); const r = rows.get(d) || 0; rows.set(d, r + 1); at.set(t.name, { x: 10 + d * DX, y: 10 + r * DY }); }
  let maxRows = 0; for (const r of rows.values()) maxRows = Math.max(maxRows, r);
  const width = 20 + (Math.max(...depth.values(), 0) + 1) * DX, height = 20 + maxRows * DY;
  svg.setAttribute("width", width); svg.setAttribute("height", height); svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  for (const t of tasks) for (const a of t.after) {
    const from = at.get(a.parent), to = at.get(t.name); if (!from) continue;
    const p = svgEl("path", { d: "M" + (from.x + W) + "," + (from.y + H / 2) + " C" + (from.x + W + 20) + "," + (from.y + H / 2) + " " + (to.x - 20) + "," + (to.y + H / 2) + " " + to.x + "," + (to.y + H / 2) });
    p.dataset.from = a.parent; p.dataset.to = t.name; p.dataset.policy = a.on_failure;
    const tip = svgEl("title"); tip.textContent = a.parent + " \u2192 " + t.name + " (if it does not succeed: " + a.on_failure + ")"; p.append(tip);
    svg.append(p);
  }
  for (const t of tasks) {
    const pos = at.get(t.name), g = svgEl("g");
    g.dataset.task = t.name; g.dataset.state = t.state; g.dataset.job = t.job_id;
    const r = svgEl("rect", { x: pos.x, y: pos.y, width: W, height: H, class: "task-" + t.state + (t.name.startsWith("@") ? " callback" : "") });
    const label = svgEl("text", { x: pos.x + 8, y: pos.y + 18 });
    label.textContent = t.name.length > 18 ? t.name.slice(0, 17) + "\u2026" : t.name;
    const tip = svgEl("title"); tip.textContent = t.name + ": " + t.state + " (job " + t.job_id + ")";
    g.append(r, label, tip); g.onclick = () => showJob(t.job_id); svg.append(g);
  }
}
async function showWorkflow(id) {
  try {
    const w = await api("/api/workflows/" + encodeURIComponent(id)); selectedWorkflow = w.id;
    $("workflow").hidden = false; $("wf-id").textContent = w.id; $("wf-name").textContent = w.name;
    $("wf-badge").textContent = w.stuck ? "stuck" : w.state; $("wf-badge").className = "badge state-" + w.state + (w.stuck ? " paused" : "");
    $("wf-retry").hidden = readOnly || !(w.failed > 0 || w.cancelled > 0 || w.held > 0);
    $("wf-cancel").hidden = readOnly || w.state !== "running";
    drawWorkflow(w); showError("");
  } catch (err) { showError(err.message); }
}
async function actWorkflow(op) {
  try { await api("/api/workflows/" + selectedWorkflow + "/" + op, { method: "POST", headers: { "X-CSRF-Token": csrf } }); showError(""); }
  catch (e) { showError(e.message); }
  await refresh(); await showWorkflow(selectedWorkflow);
}
$("wf-retry").onclick = () => actWorkflow("retry");
$("wf-cancel").onclick = () => actWorkflow("cancel");
$("wf-state").onchange = () => loadWorkflows().catch(e => showError(e.message));
$("retry").onclick = () => act("/api/jobs/" + selected + "/retry");
$("cancel").onclick = () => act("/api/jobs/" + selected + "/cancel");
$("delete").onclick = async () => { await act("/api/jobs/" + selected + "/delete"); $("job").hidden = true; selected = null; };
$("state").onchange = () => { after = ""; loadJobs(false).catch(e => showError(e.message)); };
$("name").onchange = $("state").onchange;
$("tag").onchange = $("state").onchange;
$("go").onclick = () => { if ($("find").value) showJob($("find").value.trim()); };
$("more").onclick = () => loadJobs(true).catch(e => showError(e.message));
if (readOnly) $("mode").textContent = "read-only";
async function refresh() {
  try { await Promise.all([loadStats(), loadChart(), loadWorkflows(), loadSchedules()]); if (selectedWorkflow) await showWorkflow(selectedWorkflow); if (!after || $("jobs").tBodies[0].rows.length <= 25) { after = ""; await loadJobs(false); } }
  catch (e) { showError(e.message); }
}
refresh(); setInterval(refresh, 2000);
</script>
</body>
</html>
)PAGE";

void replace_all(std::string& text, const std::string& from,
                 const std::string& to) {
  for (auto at = text.find(from); at != std::string::npos;
       at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
}

} // namespace

std::string dashboard_page(const std::string& csrf, bool read_only) {
  std::string text = page;
  replace_all(text, "@CSRF@", csrf);
  replace_all(text, "@READONLY@", read_only ? "true" : "false");
  return text;
}

} // namespace bg_jobs::detail
