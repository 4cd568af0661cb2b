// The dashboard as a person uses it: Debian's Chromium, driven by
// puppeteer-core, against `bg_jobs serve` on a SQLite file holding jobs in
// every state. The store is read with the command line to check what the
// clicks did.
//
//   node dashboard_test.mjs BG_JOBS SEED_STORE WORK_DIR [SCREENSHOT.png]
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, rmSync, mkdtempSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import puppeteer from "puppeteer-core";

const [bgJobs, seedStore, workDir, screenshot] = process.argv.slice(2);
const guard = setTimeout(() => { console.error("FAIL: timed out"); process.exit(1); }, 90000);
rmSync(workDir, { recursive: true, force: true });
mkdirSync(workDir, { recursive: true });
const db = join(workDir, "jobs.db");
const token = "t0ken-" + Math.random().toString(16).slice(2);
const ids = JSON.parse(execFileSync(seedStore, ["--store", db, "--hostile", "1", "--workflow", "1"]).toString());
const cli = (...args) => JSON.parse(execFileSync(bgJobs, ["--db", db, "--json", ...args]).toString());
let failures = 0;
const check = (what, ok, detail = "") => {
  console.log((ok ? "ok   " : "FAIL ") + what + (ok ? "" : ": " + detail));
  if (!ok) failures++;
};
async function until(what, cond, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > end) { check(what, false, "not within " + ms + " ms"); return false; }
    await new Promise(r => setTimeout(r, 50));
  }
}

// The server, with a token.
const server = spawn(bgJobs, ["--db", db, "serve", "--listen", "127.0.0.1:0", "--token", token]);
const port = await new Promise((resolve, reject) => {
  let text = "";
  server.stdout.on("data", d => { text += d; const m = text.match(/127\.0\.0\.1:(\d+)\//); if (m) resolve(m[1]); });
  server.on("exit", code => reject(new Error("serve exited " + code)));
});
const base = `http://127.0.0.1:${port}`;

const refused = await fetch(base + "/api/stats");
check("a request without the token is refused", refused.status === 401, "status " + refused.status);
const wrong = await fetch(base + "/api/stats", { headers: { Authorization: "Bearer nope" } });
check("a wrong token is refused", wrong.status === 401, "status " + wrong.status);

const profile = mkdtempSync(join(tmpdir(), "bg_jobs-chromium-"));
const browser = await puppeteer.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  userDataDir: profile,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1200, height: 900 });
  page.on("dialog", d => { check("no dialog opens", false, d.message()); d.dismiss(); });
  await page.goto(`${base}/?token=${token}`, { waitUntil: "load" });
  await page.waitForSelector('#queues tr[data-queue="mail"]');
  // The page redraws its tables every 2 s: a handle found before a click
  // may be gone by then, so the element is looked up and clicked in one
  // step inside the page, again until it is there.
  const clickOn = async (selector) => {
    const deadline = Date.now() + 20000;
    for (;;) {
      const clicked = await page.evaluate(sel => {
        const e = document.querySelector(sel);
        if (!e) return false;
        // An SVG element has no click(): a click event serves both kinds.
        e.dispatchEvent(new MouseEvent("click", { bubbles: true }));
        return true;
      }, selector);
      if (clicked) return;
      if (Date.now() > deadline) throw new Error("nothing to click at " + selector);
      await new Promise(r => setTimeout(r, 50));
    }
  };

  // The overview matches the store.
  const stats = cli("stats");
  for (const q of stats.queues) {
    for (const state of ["waiting", "scheduled", "running", "succeeded", "failed", "cancelled"]) {
      const shown = await page.$eval(`#queues tr[data-queue="${q.queue}"] td.count-${state}`, e => e.textContent);
      check(`${q.queue} ${state} shows ${q.counts[state]}`, shown === String(q.counts[state]), "shows " + shown);
    }
  }

  // A hostile payload and error are text.
  await page.select("#state", "waiting");
  await page.waitForSelector(`#jobs tr[data-id="${ids.xss}"]`);
  await clickOn(`#jobs tr[data-id="${ids.xss}"]`);
  await page.waitForFunction(id => document.getElementById("job-id").textContent === String(id), {}, ids.xss);
  const payload = await page.$eval("#job-payload", e => e.textContent);
  check("the <script> payload shows as text", payload.includes("<script>window.__xss=1</script>"), payload);
  check("the payload's script did not run", await page.evaluate(() => window.__xss === undefined));
  check("no script element came from the payload", await page.$$eval("#job-payload script, #jobs script", s => s.length === 0));

  await page.select("#state", "failed");
  const failedId = ids.failed[0];
  await page.waitForSelector(`#jobs tr[data-id="${failedId}"]`);
  check("a hostile error shows as text", await page.$$eval("#jobs img", i => i.length === 0));
  check("the hostile error's handler did not run", await page.evaluate(() => window.__xss === undefined));
  // A stored error that is not UTF-8 (with terminal escapes) still lists.
  await page.waitForSelector(`#jobs tr[data-id="${ids.hostile}"]`);
  const hostileRow = await page.$eval(`#jobs tr[data-id="${ids.hostile}"]`, e => e.textContent);
  check("an error that is not UTF-8 is listed, with U+FFFD", hostileRow.includes("\ufffd"), hostileRow);

  // A limited queue's keys are listed, a key that is markup as text.
  await page.waitForSelector('#limits:not([hidden]) table.limit-keys[data-queue="mail"]');
  const keyCells = await page.$$eval('table.limit-keys[data-queue="mail"] td:first-child', c => c.map(x => x.textContent));
  check("a concurrency key that is markup shows as text", keyCells.includes("<img src=x onerror=window.__xss=2>"), JSON.stringify(keyCells));
  check("its markup made no element", await page.$$eval("#limits img", i => i.length === 0));
  const limitsShown = await page.$eval("#limit-queues h2", e => e.textContent);
  check("the queue's limit is shown", limitsShown.includes("per_key: 2"), limitsShown);

  // A running job's progress, its text as text.
  await page.select("#state", "running");
  await page.waitForSelector(`#jobs tr[data-id="${ids.progress}"]`);
  await clickOn(`#jobs tr[data-id="${ids.progress}"]`);
  await page.waitForSelector("#job-progress:not([hidden])");
  const progressText = await page.$eval("#job-progress span", e => e.textContent);
  check("the running job's progress shows", progressText.startsWith("42.0% (attempt 1"), progressText);
  check("its text shows as text", progressText.endsWith(": page 42 of 100 <b>bold</b>"), progressText);
  check("its markup made no element", await page.$$eval("#job-progress b", b => b.length === 0));
  check("the bar is at 0.42", (await page.$eval("#job-progress progress", e => e.value)) === 0.42);

  // The workflow: listed as stuck, drawn as a graph coloured by state.
  const wf = ids.workflow;
  await page.waitForSelector(`#workflows tr[data-workflow="${wf.id}"]`);
  const wfRow = await page.$eval(`#workflows tr[data-workflow="${wf.id}"]`, e => e.textContent);
  check("the workflow is listed as stuck, its name as text", wfRow.includes("nightly <script>") && wfRow.includes("stuck"), wfRow);
  await clickOn(`#workflows tr[data-workflow="${wf.id}"]`);
  await page.waitForSelector('#wf-graph g[data-task="d"]');
  // One evaluation: the page redraws the graph on every refresh, and a node
  // it has taken out has no computed style.
  const nodes = await page.evaluate(() => [...document.querySelectorAll("#wf-graph g")].map(g => ({ task: g.dataset.task,
    state: g.dataset.state, job: Number(g.dataset.job), fill: getComputedStyle(g.querySelector("rect")).fill,
    x: Number(g.querySelector("rect").getAttribute("x")) })));
  const byTask = Object.fromEntries(nodes.map(n => [n.task, n]));
  check("every task is drawn", nodes.length === 5, JSON.stringify(nodes));
  const states = { a: "succeeded", b: "succeeded", c: "failed", d: "held" };
  for (const [task, state] of Object.entries(states))
    check(`task ${task} is drawn ${state}`, byTask[task] && byTask[task].state === state && byTask[task].job === wf.tasks[task], JSON.stringify(byTask[task]));
  check("the colours follow the states",
    byTask.a.fill === "rgb(183, 228, 199)" && byTask.c.fill === "rgb(255, 179, 179)" && byTask.d.fill === "rgb(255, 213, 145)",
    JSON.stringify(nodes.map(n => n.fill)));
  check("a child is drawn right of its parents", byTask.a.x < byTask.b.x && byTask.b.x < byTask.d.x && byTask.c.x < byTask.d.x,
    JSON.stringify(nodes.map(n => [n.task, n.x])));
  const edges = await page.$$eval("#wf-graph path", ps => ps.map(p => p.dataset.from + ">" + p.dataset.to + ":" + p.dataset.policy).sort());
  const markup = "<img src=x onerror=window.__xss=3>";
  check("every dependency is drawn, with its policy",
    JSON.stringify(edges) === JSON.stringify(["a>b:cancel", "a>c:cancel", "b>d:cancel", "c>d:hold", "a>" + markup + ":cancel"].sort()),
    JSON.stringify(edges));
  check("a task named as markup is drawn as text", nodes.some(n => n.task === markup) &&
    await page.$$eval("#wf-graph img, #workflows img", i => i.length === 0) && await page.evaluate(() => window.__xss === undefined));
  check("the workflow's name shows as text", (await page.$eval("#wf-name", e => e.textContent)) === "nightly <script>");
  await clickOn('#wf-graph g[data-task="c"]');
  await page.waitForFunction(id => document.getElementById("job-id").textContent === String(id), {}, wf.tasks.c);
  check("a task opens its job", true);

  // Retry a failed job.
  await page.select("#state", "failed");
  await page.waitForSelector(`#jobs tr[data-id="${failedId}"]`);
  await clickOn(`#jobs tr[data-id="${failedId}"]`);
  await page.waitForFunction(id => document.getElementById("job-id").textContent === String(id), {}, failedId);
  const errorsShown = await page.$$eval("#job-errors tr", r => r.length);
  check("each attempt's error is listed", errorsShown === 2, "rows: " + errorsShown);
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  await clickOn("#retry");
  await until("retry makes the failed job waiting", () => cli("jobs", "show", String(failedId)).state === "waiting");

  // Retry the stuck workflow: c waits again, d waits for it.
  await clickOn("#wf-retry");
  await until("retrying the workflow makes c ready and d blocked", () => {
    const w = cli("workflows", "show", String(wf.id));
    const st = Object.fromEntries(w.tasks.map(t => [t.name, t.state]));
    return st.c === "ready" && st.d === "blocked" && w.stuck === false;
  });
  await page.waitForFunction(() => { const g = document.querySelector('#wf-graph g[data-task="c"]'); return g && g.dataset.state === "ready"; });
  check("the graph shows c ready again", true);

  // The schedule: listed, run now, paused.
  await page.waitForSelector('#schedules tr[data-schedule="digest"]');
  const schedRow = await page.$eval('#schedules tr[data-schedule="digest"]', e => e.textContent);
  check("the schedule is listed with its time and zone", schedRow.includes("0 30 2 * * * in Europe/Berlin") && schedRow.includes("run time"), schedRow);
  await clickOn('#schedules tr[data-schedule="digest"] button.trigger');
  await until("run now enqueues a run of the schedule", () => {
    const s = cli("schedules", "list").find(x => x.name === "digest");
    return s.last && s.last.state === "waiting" && cli("jobs", "show", String(s.last.job_id)).payload.to === "ops";
  });
  await clickOn('#schedules tr[data-schedule="digest"] button.pause');
  await until("pausing shows the schedule paused in the store", () => cli("schedules", "list").find(x => x.name === "digest").paused === true);
  await page.waitForSelector('#schedules tr[data-schedule="digest"] button.resume');
  check("the page shows the schedule paused", (await page.$eval('#schedules tr[data-schedule="digest"] .state', e => e.textContent)) === "paused");

  // Pause a queue.
  await clickOn('#queues tr[data-queue="mail"] button.pause');
  await until("pausing shows the queue paused in the store",
    () => cli("queues", "list").find(q => q.queue === "mail").paused === true);
  await page.waitForSelector('#queues tr[data-queue="mail"] button.resume');
  check("the page shows it paused",
    (await page.$eval('#queues tr[data-queue="mail"] .state', e => e.textContent)) === "paused");

  // An action without the page's CSRF token is refused.
  const forged = await page.evaluate(async id => (await fetch(`/api/jobs/${id}/delete`, { method: "POST" })).status, ids.cancelled[0]);
  check("a POST without the CSRF token is refused", forged === 403, "status " + forged);
  check("and deleted nothing", cli("jobs", "show", String(ids.cancelled[0])).state === "cancelled");
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
  server.kill("SIGTERM");
}
const code = await new Promise(r => server.exitCode !== null ? r(server.exitCode) : server.on("exit", r));
check("serve exits 0 on SIGTERM", code === 0, "exit " + code);
clearTimeout(guard);
console.log(failures === 0 ? "all checks passed" : failures + " check(s) failed");
process.exit(failures === 0 ? 0 : 1);
