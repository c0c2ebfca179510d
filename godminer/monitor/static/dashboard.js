/* godminer operator dashboard.
 *
 * Polls the operator JSON API (one request per panel, never more than one round in flight) and draws
 * every panel with plain DOM and inline SVG: no dependencies, no build step, nothing from the network
 * but this miner. All markup is built with the `html` tag below, which escapes every value it
 * interpolates, so nothing the API returns can become markup.
 */

const PARAMS = new URLSearchParams(location.search);
const TOKEN = PARAMS.get("token");
// Seconds between refreshes: ?refresh=<s>, at least 2, 10 by default.
const REFRESH_MS = Math.max(2, Number(PARAMS.get("refresh")) || 10) * 1000;
const TIMEOUT_MS = 8_000;
const PAGE_SIZE = 25;
const OFFER_SAMPLE = 200; // recent offers read to summarise why offers were declined
const LOG_TAIL = 200;
const WINDOW_S = 24 * 3600;
const SLACK_SHORT_S = 1800; // deadline slack shows red below this, amber below twice this
const TRACK_H = 48; // px of bars in a GPU's timeline row, shared by its lanes
const MAX_LANES = 3;
const GPU_INFO_W = 346; // px left of the timeline tracks (.gpu-row's first column and gap)
const CHAR_W = 6.8; // px per character of a segment's label
const ACTIVE = new Set(["accepted", "queued", "preparing", "training", "publishing"]);
const STATES = ["accepted", "queued", "preparing", "training", "publishing", "submitted", "failed", "expired", "cancelled"];
const KINDS = ["instruct", "chat", "dpo", "grpo", "sdxl", "flux"];

/* ---------- markup ---------- */

class Markup {
  constructor(text) { this.text = text; }
  toString() { return this.text; }
}

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

function interpolate(value) {
  if (value instanceof Markup) return value.text;
  if (Array.isArray(value)) return value.map(interpolate).join("");
  if (value === null || value === undefined || value === false) return "";
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/** Tagged template: literal parts stay markup, interpolated values are escaped (unless Markup themselves). */
function html(strings, ...values) {
  return new Markup(strings.reduce((out, part, i) => out + part + (i < values.length ? interpolate(values[i]) : ""), ""));
}

const $ = (id) => document.getElementById(id);
const lastMarkup = new WeakMap();

/** Replace an element's content only when the markup changed (no flicker, hover and scroll survive),
 * keeping keyboard focus on the element with the same data-key. */
function patch(el, markup) {
  const text = String(markup);
  if (lastMarkup.get(el) === text) return;
  const focused = el.contains(document.activeElement) ? document.activeElement.dataset.key : undefined;
  el.innerHTML = text;
  lastMarkup.set(el, text);
  if (focused) el.querySelector(`[data-key="${CSS.escape(focused)}"]`)?.focus();
}

/* ---------- formatting ---------- */

let clockSkew = 0; // server clock minus browser clock, in seconds: relative times follow the miner
const now = () => Date.now() / 1000 + clockSkew;

function fmtDuration(seconds) {
  const minutes = Math.floor(Math.abs(seconds) / 60);
  const hours = Math.floor(minutes / 60);
  const days = Math.floor(hours / 24);
  if (days > 0) return `${days}d ${hours % 24}h`;
  if (hours > 0) return `${hours}h ${String(minutes % 60).padStart(2, "0")}m`;
  return minutes > 0 ? `${minutes}m` : "<1m";
}

/** Only the largest unit ("4h", "2d"): for narrow columns. */
function fmtAge(seconds) {
  const units = [[86400, "d"], [3600, "h"], [60, "m"]];
  const [size, unit] = units.find(([size]) => seconds >= size) ?? [60, "m"];
  return `${Math.floor(seconds / size)}${unit}`;
}

const fmtAgo = (ts) => (ts ? `${fmtDuration(now() - ts)} ago` : "—");
const fmtTime = (ts) => (ts ? new Date(ts * 1000).toLocaleString([], {
  month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hour12: false }) : "—");
const fmtClock = (ts, seconds = false) => new Date(ts * 1000).toLocaleTimeString([], {
  hour: "2-digit", minute: "2-digit", ...(seconds && { second: "2-digit" }), hour12: false });
const fmtPct = (ratio, digits = 0) => (ratio == null ? "—" : `${(ratio * 100).toFixed(digits)}%`);
const fmtChange = (ratio) => `${ratio < 0 ? "−" : "+"}${Math.abs(ratio * 100).toFixed(0)}%`;
const fmtNum = (value, digits = 3) => (value == null || !Number.isFinite(value) ? "—" : value.toFixed(digits));
const fmtTick = (v) => (Math.abs(v) >= 1000 ? v.toLocaleString() : String(Number(v.toPrecision(3))));
const shortId = (id) => id.slice(0, 8);
const shortModel = (model) => model.split("/").pop();
const kindClass = (kind) => `k-${KINDS.includes(kind) ? kind : "other"}`;
const humanise = (rule) => rule.replaceAll("_", " ").replace(/^\w/, (c) => c.toUpperCase()).replace(/\bgpu\b/gi, "GPU");
const jobLink = (id, logs = false) => `#job=${encodeURIComponent(id)}${logs ? "&logs" : ""}`;
const empty = (text) => html`<p class="empty">${text}</p>`;

function debounce(fn, ms) {
  let timer;
  return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
}

/* ---------- API ---------- */

class ApiError extends Error {}
const controllers = new Map();

/** GET a JSON document. A newer request under the same key aborts the older one (its caller sees an
 * AbortError and draws nothing); failures become ApiErrors whose message says what went wrong. */
async function api(key, path) {
  controllers.get(key)?.abort();
  const controller = new AbortController();
  controllers.set(key, controller);
  const signal = AbortSignal.any([controller.signal, AbortSignal.timeout(TIMEOUT_MS)]);
  try {
    const response = await fetch(path, {
      headers: TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {}, signal, cache: "no-store" });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new ApiError(`${path}: HTTP ${response.status}${body.detail ? ` (${body.detail})` : ""}`);
    }
    return await response.json();
  } catch (err) {
    if (err instanceof ApiError || err.name === "AbortError") throw err;
    if (err.name === "TimeoutError") throw new ApiError(`${path}: no answer within ${TIMEOUT_MS / 1000} s`);
    if (err instanceof TypeError) throw new ApiError(`${path}: miner unreachable (${err.message})`);
    throw new ApiError(`${path}: ${err.message}`);
  } finally {
    if (controllers.get(key) === controller) controllers.delete(key);
  }
}

/* ---------- state ---------- */

const ui = { offset: 0, state: "", selected: null, logTab: "train", showLogs: false };
const data = {}; // latest good answer per source
const errors = new Map(); // source -> message of its last failure
const detail = { job: null, logs: null, error: null };
let lastUpdate = null;

// One entry per API source: where it is read from, the panel it feeds and what draws it.
const sources = {
  summary: { path: () => "api/summary", panel: null, views: [renderHeader, renderStateFilter] },
  standing: { path: () => "api/standing", panel: "standing-panel", views: [renderHeader, renderStanding] },
  alerts: { path: () => "api/alerts", panel: "alerts", views: [renderAlerts] },
  gpus: { path: () => `api/gpus?window_s=${WINDOW_S}`, panel: "gpus-panel", views: [renderGpus] },
  jobs: { path: jobsPath, panel: "jobs-panel", views: [renderJobs] },
  success: { path: () => "api/success", panel: "success-panel", views: [renderSuccess] },
  offers: { path: () => `api/offers?limit=${OFFER_SAMPLE}`, panel: "offers-panel", views: [renderOffers] },
};

function jobsPath() {
  const query = new URLSearchParams({ limit: PAGE_SIZE, offset: ui.offset });
  if (ui.state) query.set("state", ui.state);
  return `api/jobs?${query}`;
}

/** Fetch one source and redraw what it feeds; a view that throws is reported, never propagated. */
async function load(key) {
  const source = sources[key];
  const panel = source.panel && $(source.panel);
  panel?.setAttribute("aria-busy", "true");
  try {
    data[key] = await api(key, source.path());
    errors.delete(key);
    if (key === "summary") clockSkew = data.summary.now - Date.now() / 1000;
  } catch (err) {
    if (err.name === "AbortError") return; // superseded: the newer request finishes the panel
    errors.set(key, err.message);
  }
  panel?.removeAttribute("aria-busy");
  for (const view of source.views) {
    try {
      if (key in data) view();
    } catch (err) {
      errors.set(key, `${key}: could not draw (${err.message})`);
    }
  }
  panel?.classList.toggle("stale", errors.has(key));
  renderStatus();
}

async function loadDetail() {
  const id = ui.selected;
  if (!id) return;
  try {
    const base = `api/jobs/${encodeURIComponent(id)}`;
    const [job, logs] = await Promise.all([api("detail", base), api("logs", `${base}/logs?tail=${LOG_TAIL}`)]);
    Object.assign(detail, { job, logs, error: null });
  } catch (err) {
    if (err.name === "AbortError") return;
    detail.error = err.message;
  }
  if (id === ui.selected) renderDetail();
}

/* ---------- refresh loop ---------- */

let round = null;
let timer = null;

/** One refresh round: every source at once, then the next round REFRESH_MS after this one ends
 * (rounds never overlap; none run while the tab is hidden). */
function refresh() {
  clearTimeout(timer);
  round ??= (async () => {
    const detailActive = ui.selected && (!detail.job || detail.error || ACTIVE.has(detail.job.job.state));
    await Promise.all([...Object.keys(sources).map(load), detailActive ? loadDetail() : null]);
    if (Object.keys(sources).every((key) => key in data)) document.body.dataset.ready = "1";
  })().finally(() => {
    round = null;
    if (!document.hidden) timer = setTimeout(refresh, REFRESH_MS);
  });
  return round;
}

/* ---------- header, status, alerts ---------- */

function renderHeader() {
  const { summary, standing } = data;
  const rank = !standing ? "—" : standing.rank != null ? html`${standing.rank} <small>of ${standing.nodes}</small>`
    : standing.registered ? "—" : html`<span class="bad">not registered</span>`;
  const items = [
    ["Hotkey", standing ? html`<span class="mono" title="${standing.hotkey}">${standing.hotkey.slice(0, 6)}…${
      standing.hotkey.slice(-5)}</span>` : "—"],
    ["Rank", rank],
    ["Incentive", standing ? fmtNum(standing.incentive, 4) : "—"],
    ["Est. weight", standing ? fmtNum(standing.estimated_realtime_weight, 3) : "—"],
    ["Active jobs", summary ? summary.active : "—"],
    ["Success", summary ? fmtPct(summary.success_ratio, 1) : "—"],
  ];
  patch($("kpis"), html`${items.map(([label, value]) => html`<div><dt>${label}</dt><dd>${value}</dd></div>`)}`);
}

function renderStatus() {
  const failing = [...errors.values()];
  if (!failing.length) lastUpdate = now();
  const status = $("status");
  status.className = `status ${failing.length ? "bad" : "ok"}`;
  status.textContent = failing.length
    ? `${failing.length} request${failing.length > 1 ? "s" : ""} failing · retrying every ${REFRESH_MS / 1000} s`
    : `Live · updated ${fmtClock(lastUpdate, true)}`;
  const box = $("errors");
  box.hidden = !failing.length;
  patch(box, html`<strong>Some panels show stale data:</strong><ul>${failing.map((m) => html`<li>${m}</li>`)}</ul>`);
}

function renderAlerts() {
  const { open, recent } = data.alerts;
  const box = $("alerts");
  box.classList.toggle("firing", open.length > 0);
  document.title = `${open.length ? `(${open.length}) ` : ""}godminer · operator`;
  if (!open.length) {
    const last = recent.find((a) => a.state === "resolved");
    patch(box, html`<p class="alerts-ok"><span aria-hidden="true">✓</span> No open alerts${last
      ? html` <span class="muted">· last resolved: ${humanise(last.rule)}, ${fmtAgo(last.resolved_at)}</span>` : ""}</p>`);
    return;
  }
  patch(box, html`<h2 class="sr-only">Open alerts</h2><ul>${open.map((a) => html`<li>
    <span class="alert-icon" aria-hidden="true">!</span>
    <strong>${humanise(a.rule)}${a.key ? ` · ${a.key}` : ""}</strong>
    <span>${a.message}</span>
    <span class="muted" title="fired ${fmtTime(a.fired_at)}">firing for ${fmtDuration(now() - a.fired_at)}</span>
  </li>`)}</ul>`);
}

/* ---------- GPU timeline ---------- */

/** Greedy interval partitioning: overlapping segments of one GPU go to separate lanes, at most
 * MAX_LANES of them (beyond that a segment shares the lane that frees first, so a row's height stays
 * bounded whatever the history holds). */
function placeInLanes(segments) {
  const laneEnds = [];
  const placed = [...segments].sort((a, b) => a.start - b.start).map((seg) => {
    let lane = laneEnds.findIndex((end) => end <= seg.start);
    if (lane < 0 && laneEnds.length < MAX_LANES) lane = laneEnds.push(0) - 1;
    if (lane < 0) lane = laneEnds.indexOf(Math.min(...laneEnds));
    laneEnds[lane] = Math.max(laneEnds[lane], seg.end);
    return { seg, lane };
  });
  return { placed, lanes: Math.max(1, laneEnds.length) };
}

/** Local-time hour boundaries every `step` hours between two timestamps. */
function hourTicks(since, until, step) {
  const t = new Date(since * 1000);
  t.setMinutes(0, 0, 0);
  const ticks = [];
  for (t.setHours(t.getHours() + 1); t.getTime() / 1000 < until; t.setHours(t.getHours() + 1)) {
    if (t.getHours() % step === 0) ticks.push(t.getTime() / 1000);
  }
  return ticks;
}

/** A horizontal bar for a 0-1 ratio; `bare` keeps the label for screen readers only. */
function meter(label, ratio, text, level, bare = false) {
  const pct = Math.round(Math.min(Math.max(ratio, 0), 1) * 100);
  return html`<div class="meter ${level}${bare ? " bare" : ""}"><span class="${bare ? "sr-only" : "meter-label"}">${label}</span>
    <span class="meter-bar" role="meter" aria-label="${label}" aria-valuemin="0" aria-valuemax="100"
      aria-valuenow="${pct}"><span style="width:${pct}%"></span></span><span class="meter-text">${text}</span></div>`;
}

function gpuInfo(row, current) {
  const r = row.reading;
  const holding = html`<span class="gpu-job">${current.length
    ? current.map((s) => html`<a href="${jobLink(s.task_id)}" class="kind ${kindClass(s.kind)}">${shortId(s.task_id)} · ${s.kind}</a>`)
    : html`<span class="muted">idle</span>`}</span>`;
  if (!r) return html`<div class="gpu-info"><div class="gpu-name">${row.label}${holding}</div></div>`;
  const memory = r.memory_gb ? r.memory_used_gb / r.memory_gb : 0;
  // A GPU held by a running job but barely used is the first sign of a stuck trainer.
  const utilLevel = !r.healthy ? "bad" : current.length && r.utilization < 0.3 ? "warn" : "ok";
  return html`<div class="gpu-info">
    <div class="gpu-name" title="${r.name}"><span class="dot ${r.healthy ? "ok" : "bad"}" title="${r.healthy ? "healthy" : r.error ?? "unhealthy"}"></span>
      ${row.label}${r.temperature_c != null ? html` <small>${r.temperature_c.toFixed(0)} °C</small>` : ""}${holding}</div>
    ${meter("util", r.utilization, fmtPct(r.utilization), utilLevel)}
    ${meter("mem", memory, `${r.memory_used_gb.toFixed(0)}/${r.memory_gb.toFixed(0)} GB`, memory > 0.95 ? "bad" : "ok")}
    ${r.error ? html`<div class="bad">${r.error}</div>` : ""}
  </div>`;
}

function renderGpus() {
  const { since, now: until, gpus, segments } = data.gpus;
  const span = until - since;
  const x = (t) => ((Math.min(Math.max(t, since), until) - since) / span) * 100;
  const rows = new Map(gpus.map((r) => [`local:${r.index}`, { label: `GPU ${r.index}`, reading: r, segments: [] }]));
  for (const seg of segments) {
    const key = `${seg.box}:${seg.gpu}`;
    if (!rows.has(key)) rows.set(key, { label: `${seg.box} · GPU ${seg.gpu}`, reading: null, segments: [] });
    rows.get(key).segments.push(seg);
  }
  // Hour lines every 3 h, leaving room for the "now" label at the right end.
  const ticks = hourTicks(since, until, 3).filter((t) => x(t) > 3 && x(t) < 96);
  const trackPx = Math.max(200, $("gpus").clientWidth - GPU_INFO_W);
  const grid = ticks.map((t) => html`<line class="hour" x1="${x(t)}%" x2="${x(t)}%" y1="0" y2="100%"/>`);

  const body = [...rows.values()].map((row) => {
    const { placed, lanes } = placeInLanes(row.segments);
    const laneH = Math.max(22, Math.floor(TRACK_H / lanes));
    const height = lanes * laneH + 8;
    const current = row.segments.filter((s) => ACTIVE.has(s.state));
    // Where the next segment of each lane starts: a label never runs under its neighbour.
    const nextStart = new Map();
    const roomUntil = [];
    for (let i = placed.length - 1; i >= 0; i -= 1) {
      roomUntil[i] = nextStart.get(placed[i].lane) ?? until;
      nextStart.set(placed[i].lane, placed[i].seg.start);
    }
    const bars = placed.map(({ seg, lane }, i) => {
      const left = x(seg.start);
      const width = Math.max(x(seg.end) - left, 0.25);
      // The longest label that fits the bar: id and kind, the id alone, or nothing.
      const room = (Math.min(width, x(roomUntil[i]) - left) / 100) * trackPx - 12;
      const label = [`${shortId(seg.task_id)} · ${seg.kind}`, shortId(seg.task_id)].find((l) => l.length * CHAR_W <= room);
      return html`<a href="${jobLink(seg.task_id)}" class="seg ${kindClass(seg.kind)} ${seg.state}${
        ACTIVE.has(seg.state) ? " active" : ""}" data-task="${seg.task_id}">
        <title>${seg.kind} job ${seg.task_id} (${seg.state})\n${fmtTime(seg.start)} → ${
          ACTIVE.has(seg.state) ? "now" : fmtTime(seg.end)} · ${fmtDuration(seg.end - seg.start)}</title>
        <svg x="${left}%" y="${4 + lane * laneH}" width="${width}%" height="${laneH - 2}">
          <rect width="100%" height="100%" rx="3"/>
          ${label ? html`<text x="6" y="${(laneH - 2) / 2}" dominant-baseline="central">${label}</text>` : ""}
        </svg></a>`;
    });
    return html`<div class="gpu-row">${gpuInfo(row, current)}
      <svg class="track" width="100%" height="${height}" role="img"
        aria-label="${row.label}: ${row.segments.length} job${row.segments.length === 1 ? "" : "s"} in the last 24 h">
        <rect class="track-bg" width="100%" height="100%" rx="4"/>${grid}${bars}</svg></div>`;
  });

  const axis = html`<div class="gpu-row axis-row"><div></div><svg class="axis" width="100%" height="18" aria-hidden="true">
    <text x="0" y="13">${fmtClock(since)}</text>
    ${ticks.map((t) => html`<text x="${x(t)}%" y="13" text-anchor="middle">${fmtClock(t)}</text>`)}
    <text x="100%" y="13" text-anchor="end">now</text></svg></div>`;
  patch($("gpus"), rows.size ? html`${body}${axis}` : empty("No GPUs in the inventory."));

  const models = Map.groupBy(gpus, (g) => g.name.replace(/^NVIDIA /, ""));
  $("gpu-models").textContent = [...models].map(([name, list]) => `${list.length} × ${name} · `).join("");
  const kinds = [...new Set(segments.map((s) => s.kind))].sort();
  patch($("legend"), html`${kinds.map((k) => html`<li><span class="swatch ${kindClass(k)}"></span>${k}</li>`)}
    <li><span class="swatch active"></span>running</li><li><span class="swatch failed"></span>failed</li>`);
}

/* ---------- jobs table ---------- */

function renderStateFilter() {
  const counts = data.summary.jobs;
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const options = STATES.filter((s) => counts[s] || s === ui.state);
  const select = $("state-filter");
  patch(select, html`<option value="">all (${total})</option>${options.map((s) =>
    html`<option value="${s}">${s} (${counts[s] ?? 0})</option>`)}`);
  select.value = ui.state;
}

function statePill(state) {
  return html`<span class="pill state-${state}">${state}</span>`;
}

function slackCell(job) {
  if (job.slack_s == null || !ACTIVE.has(job.state)) {
    if (job.state === "submitted" && job.submitted_at && job.termination_at) {
      return html`<span class="muted" title="submitted ${fmtTime(job.submitted_at)}, deadline ${fmtTime(job.termination_at)}">${
        fmtDuration(job.termination_at - job.submitted_at)} spare</span>`;
    }
    return html`<span class="muted">—</span>`;
  }
  const overrun = job.state === "training" && job.train_until && now() > job.train_until;
  const level = job.slack_s < SLACK_SHORT_S || overrun ? "bad" : job.slack_s < 2 * SLACK_SHORT_S ? "warn" : "ok";
  const title = `deadline ${fmtTime(job.termination_at)}${job.train_until
    ? `; training planned until ${fmtTime(job.train_until)}` : ""}${overrun ? " (overrunning)" : ""}`;
  return html`<span class="slack ${level}" title="${title}">${job.slack_s > 0 ? `${fmtDuration(job.slack_s)} left`
    : "past deadline"}</span>`;
}

/** The dev metric (lower is better) against the base model's, with the relative change. */
function metricCell(dev, base) {
  if (dev == null) return html`<span class="muted">—</span>`;
  if (!base) return html`${fmtNum(dev)}`;
  const change = (dev - base) / Math.abs(base);
  return html`<span title="dev metric ${dev} vs base ${base} (lower is better)">${fmtNum(dev)}
    <span class="muted">vs ${fmtNum(base)}</span>
    <span class="${change < 0 ? "good" : "bad"}">${fmtChange(change)}</span></span>`;
}

function jobRow(job) {
  const selected = job.task_id === ui.selected;
  const gpus = job.gpu_ids.length ? job.gpu_ids.join(", ") + (job.box && job.box !== "local" ? ` @${job.box}` : "") : "—";
  return html`<tr data-task="${job.task_id}" class="${selected ? "selected" : ""}">
    <td><a class="mono" href="${jobLink(job.task_id)}" data-key="job-${job.task_id}" title="${job.task_id}"
      ${selected ? html`aria-current="true"` : ""}>${shortId(job.task_id)}</a></td>
    <td>${statePill(job.state)}</td>
    <td><span class="kind ${kindClass(job.kind)}">${job.kind}</span></td>
    <td class="model" title="${job.model} (${job.family})">${shortModel(job.model)}</td>
    <td class="num">${gpus}</td>
    <td>${slackCell(job)}</td>
    <td class="num">${metricCell(job.dev_metric, job.base_metric)}</td>
    <td class="muted num" title="${fmtTime(job.updated_at)}">${fmtAge(now() - job.updated_at)}</td>
    <td><a href="${jobLink(job.task_id, true)}" data-key="logs-${job.task_id}">logs</a></td>
  </tr>`;
}

function renderJobs() {
  const { total, offset, jobs } = data.jobs;
  if (!jobs.length && offset > 0) { // the page emptied under us (jobs changed state): go back one
    ui.offset = Math.max(0, offset - PAGE_SIZE);
    load("jobs");
    return;
  }
  patch($("jobs"), html`<table class="jobs">
    <caption class="sr-only">Jobs, most recently changed first</caption>
    <thead><tr><th scope="col">Task</th><th scope="col">State</th><th scope="col">Type</th><th scope="col">Model</th>
      <th scope="col">GPUs</th><th scope="col">Deadline</th><th scope="col">Dev metric</th>
      <th scope="col" class="num" title="Time since the job last changed state">Age</th><th scope="col"><span class="sr-only">Logs</span></th></tr></thead>
    <tbody>${jobs.length ? jobs.map(jobRow) : html`<tr><td colspan="9" class="empty">No jobs${
      ui.state ? ` in state ${ui.state}` : ""}.</td></tr>`}</tbody></table>`);
  $("page-info").textContent = total ? `${offset + 1}–${offset + jobs.length} of ${total}` : "no jobs";
  $("prev").disabled = offset === 0;
  $("next").disabled = offset + jobs.length >= total;
}

/* ---------- job detail ---------- */

function niceTicks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * magnitude).find((s) => s >= raw);
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

const linear = (d0, d1, r0, r1) => (v) => (d1 === d0 ? (r0 + r1) / 2 : r0 + ((v - d0) / (d1 - d0)) * (r1 - r0));
const pathOf = (points, sx, sy) => points.map((p, i) => `${i ? "L" : "M"}${sx(p.x).toFixed(1)} ${sy(p.y).toFixed(1)}`).join("");

/** An SVG line chart. series: [{points: [{x, y, best?, title?}], cls, markers?}]; reference: {y, label}. */
function lineChart({ width, height, series, label, xLabel, reference }) {
  const points = series.flatMap((s) => s.points);
  const margin = { left: 46, right: 12, top: 10, bottom: 30 };
  const xs = points.map((p) => p.x);
  const ys = [...points.map((p) => p.y), ...(reference ? [reference.y] : [])];
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const pad = (Math.max(...ys) - Math.min(...ys)) * 0.08 || 0.5;
  const [y0, y1] = [Math.min(...ys) - pad, Math.max(...ys) + pad];
  const sx = linear(x0, x1, margin.left, width - margin.right);
  const sy = linear(y0, y1, height - margin.bottom, margin.top);
  const xTicks = niceTicks(x0, x1, Math.max(2, Math.floor(width / 90)));
  const yTicks = niceTicks(y0, y1, 5);
  return html`<svg class="chart" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${label}">
    <g class="grid">${yTicks.map((v) => html`<line x1="${margin.left}" x2="${width - margin.right}" y1="${sy(v)}" y2="${sy(v)}"/>`)}</g>
    <g class="ticks">
      ${yTicks.map((v) => html`<text x="${margin.left - 6}" y="${sy(v)}" text-anchor="end" dominant-baseline="middle">${fmtTick(v)}</text>`)}
      ${xTicks.map((v) => html`<text x="${sx(v)}" y="${height - margin.bottom + 15}" text-anchor="middle">${fmtTick(v)}</text>`)}
      <text class="axis-label" x="${width - margin.right}" y="${height - 3}" text-anchor="end">${xLabel}</text>
    </g>
    ${reference ? html`<g class="reference"><line x1="${margin.left}" x2="${width - margin.right}" y1="${sy(reference.y)}" y2="${sy(reference.y)}"/>
      <text x="${width - margin.right - 4}" y="${sy(reference.y) - 5}" text-anchor="end">${reference.label}</text></g>` : ""}
    ${series.map((s) => html`<path class="series ${s.cls}" d="${pathOf(s.points, sx, sy)}"/>${s.markers ? s.points.map((p) =>
      html`<circle class="marker${p.best ? " best" : ""}" cx="${sx(p.x)}" cy="${sy(p.y)}" r="${p.best ? 4 : 3}"><title>${p.title}</title></circle>`) : ""}`)}
  </svg>`;
}

/** Exponential moving average with bias correction, for a readable trend through a noisy loss. */
function smooth(points, alpha = 0.08) {
  let avg = 0;
  return points.map((p, i) => {
    avg = alpha * p.y + (1 - alpha) * avg;
    return { x: p.x, y: avg / (1 - (1 - alpha) ** (i + 1)) };
  });
}

function lossChart(train, width) {
  const raw = train.filter((p) => Number.isFinite(p.loss)).map((p) => ({ x: p.step, y: p.loss }));
  if (!raw.length) return empty("No training loss reported yet.");
  const last = raw.at(-1);
  return html`<h3>Training loss <small>${fmtNum(last.y)} at step ${last.x}</small>
    <small class="chart-legend"><span class="swatch-line raw"></span>raw <span class="swatch-line smooth"></span>smoothed</small></h3>
    ${lineChart({ width, height: 170, label: `Training loss over ${raw.length} points, last ${fmtNum(last.y)} at step ${last.x}`,
      xLabel: "step", series: [{ points: raw, cls: "raw" }, { points: smooth(raw), cls: "smooth" }] })}`;
}

function devChart(evals, job, width) {
  const points = evals.filter((p) => Number.isFinite(p.dev_metric)).map((p) => ({ x: p.step, y: p.dev_metric,
    best: p.best, title: `step ${p.step}: ${fmtNum(p.dev_metric, 4)}${p.best ? " (best so far)" : ""} · ${p.weights} weights` }));
  if (!points.length) return empty("No dev evaluations yet.");
  const base = job.base_metric ?? evals.find((p) => p.step === 0)?.dev_metric;
  const best = points.reduce((a, b) => (b.y < a.y ? b : a));
  const change = base ? ` (${fmtChange((best.y - base) / base)} vs base)` : "";
  return html`<h3>Dev metric <small>lower is better · best ${fmtNum(best.y)} at step ${best.x}${change}</small></h3>
    ${lineChart({ width, height: 150, label: `Dev metric over ${points.length} evaluations, best ${fmtNum(best.y)}`,
      xLabel: "step", series: [{ points, cls: "dev", markers: true }],
      reference: base ? { y: base, label: `base ${fmtNum(base)}` } : null })}`;
}

/** Log lines: JSON lines become "time level message key=value", anything else stays as written. */
function logLines(text) {
  if (!text) return html`<span class="muted">(empty)</span>`;
  return text.split("\n").map((line) => {
    let item;
    try { item = JSON.parse(line); } catch { return html`${line}\n`; }
    if (typeof item !== "object" || item === null || !("msg" in item)) return html`${line}\n`;
    const { ts, level = "info", msg, ...rest } = item;
    const extra = Object.entries(rest).map(([k, v]) => ` ${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join("");
    return html`<span class="log-${level}">${ts ? `${fmtClock(ts, true)} ` : ""}${level.toUpperCase().padEnd(7)}${msg}${extra}</span>\n`;
  });
}

function renderDetail() {
  const el = $("detail");
  if (!ui.selected) {
    delete el.dataset.loaded;
    patch(el, html`<header class="panel-head"><h2 id="detail-title">Job detail</h2></header>
      ${empty("Select a job in the table or on the GPU timeline to see its loss and dev-metric curves, events and logs.")}`);
    return;
  }
  const head = html`<header class="panel-head"><h2 id="detail-title">Job <span class="mono">${shortId(ui.selected)}</span>
    ${detail.job ? statePill(detail.job.job.state) : ""}</h2>
    <a class="close" href="#" aria-label="Close job detail">×</a></header>`;
  if (!detail.job || detail.job.job.task_id !== ui.selected) {
    patch(el, html`${head}${detail.error ? html`<p class="panel-error">${detail.error}</p>` : empty("Loading…")}`);
    return;
  }
  const { job, events, progress } = detail.job;
  const width = Math.max(280, el.clientWidth);
  const facts = [
    ["Task", html`<span class="mono">${job.task_id}</span>`],
    ["Type", html`${job.task_type} <span class="kind ${kindClass(job.kind)}">${job.kind}</span>`],
    ["Model", html`${job.model} <small class="muted">${job.family} · ${job.params_b}B</small>`],
    ["GPUs", job.gpu_ids.length ? `${job.gpu_ids.join(", ")} on ${job.box}` : "—"],
    ["Accepted", fmtTime(job.accepted_at)],
    ["Started", fmtTime(job.started_at)],
    ["Deadline", html`${fmtTime(job.termination_at)} ${ACTIVE.has(job.state) ? slackCell(job) : ""}`],
    ["Train until", fmtTime(job.train_until)],
    ...(job.finished_at ? [["Finished", fmtTime(job.finished_at)]] : []),
    ["Dev metric", metricCell(job.dev_metric, job.base_metric)],
    ...(job.repo ? [["Repo", html`<span class="mono">${job.repo}</span>`]] : []),
    ["Attempts", job.attempts],
    ...(job.reason ? [["Reason", job.reason]] : []),
  ];
  const tabs = ["miner", "train", "process"];
  patch(el, html`${head}
    ${detail.error ? html`<p class="panel-error">${detail.error} · showing the last good answer</p>` : ""}
    <dl class="facts">${facts.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}</dl>
    <div class="chart-box" id="loss-chart">${lossChart(progress.train, width)}</div>
    <div class="chart-box" id="dev-chart">${devChart(progress.eval, job, width)}</div>
    <h3>Events</h3>
    <table class="events"><caption class="sr-only">State changes of this job</caption>
      <thead><tr><th scope="col">When</th><th scope="col">Change</th><th scope="col">Reason</th></tr></thead>
      <tbody>${events.map((e) => html`<tr><td class="nowrap">${fmtTime(e.at)}</td>
        <td class="nowrap">${e.from_state ? html`${e.from_state} → ` : ""}${statePill(e.to_state)}</td>
        <td>${e.reason}</td></tr>`)}</tbody></table>
    <h3 id="logs-title">Logs <small>last ${LOG_TAIL} lines</small></h3>
    <div class="tabs" role="group" aria-labelledby="logs-title">${tabs.map((t) => html`<button type="button" data-log="${t}" data-key="tab-${t}"
      aria-pressed="${t === ui.logTab}">${t}.log</button>`)}</div>
    <pre class="log" id="log" tabindex="0" aria-label="${ui.logTab}.log">${logLines(detail.logs[ui.logTab])}</pre>`);
  el.dataset.loaded = ui.selected;
  if (ui.showLogs) {
    ui.showLogs = false;
    $("logs-title").scrollIntoView({ block: "start", behavior: "smooth" });
  }
}

/** The selected job lives in the location hash (#job=<id>, plus &logs to jump to its logs). */
function selectFromHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const id = params.get("job");
  ui.showLogs = params.has("logs");
  if (id !== ui.selected) {
    ui.selected = id;
    Object.assign(detail, { job: null, logs: null, error: null });
    if (data.jobs) renderJobs();
  }
  renderDetail();
  if (id) {
    const top = $("detail-panel").getBoundingClientRect().top;
    if (top < 0 || top > innerHeight * 0.8) $("detail-panel").scrollIntoView({ block: "start" });
    loadDetail();
  }
}

/* ---------- success, offers, standing ---------- */

function ratioCell(submitted, failed) {
  const total = submitted + failed;
  if (!total) return html`<td class="cell none">·</td>`;
  const ratio = submitted / total;
  const hue = Math.round(Math.min(Math.max((ratio - 0.5) / 0.5, 0), 1) * 130); // red at 50 % or less, green at 100 %
  return html`<td class="cell" style="--cell: hsl(${hue} 55% 28%)" title="${submitted} submitted, ${failed} failed">
    ${fmtPct(ratio)}<small>${submitted}/${total}</small></td>`;
}

function renderSuccess() {
  const rows = data.success;
  if (!rows.length) return patch($("success"), empty("No finished jobs yet."));
  const kinds = [...new Set(rows.map((r) => r.kind))].sort();
  const families = [...new Set(rows.map((r) => r.family))].sort();
  const cells = new Map(rows.map((r) => [`${r.kind}|${r.family}`, r]));
  const sum = (list, field) => list.reduce((n, r) => n + r[field], 0);
  const ofKind = (kind) => rows.filter((r) => r.kind === kind);
  patch($("success"), html`<table class="matrix">
    <caption class="sr-only">Share of finished jobs submitted, by task type (rows) and model family (columns)</caption>
    <thead><tr><th scope="col">Type</th>${families.map((f) => html`<th scope="col">${f}</th>`)}<th scope="col">All</th></tr></thead>
    <tbody>${kinds.map((k) => html`<tr><th scope="row"><span class="kind ${kindClass(k)}">${k}</span></th>
      ${families.map((f) => { const r = cells.get(`${k}|${f}`); return r ? ratioCell(r.submitted, r.failed) : ratioCell(0, 0); })}
      ${ratioCell(sum(ofKind(k), "submitted"), sum(ofKind(k), "failed"))}</tr>`)}</tbody>
    <tfoot><tr><th scope="row">All</th>${families.map((f) => { const list = rows.filter((r) => r.family === f);
      return ratioCell(sum(list, "submitted"), sum(list, "failed")); })}${ratioCell(sum(rows, "submitted"), sum(rows, "failed"))}</tr></tfoot>
  </table>`);
}

// Decline reasons carry ids and figures ("would make job 1a2b3c4d miss its deadline", "gain -0.0012 = ...");
// they are counted by what stays when the details after a colon, the ids and the numbers are masked.
function reasonGroup(reason) {
  return reason.split(": ")[0]
    .replace(/\b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b/g, "…")
    .replace(/[-+]?\d+(?:\.\d+)?/g, "…");
}

function renderOffers() {
  const { counts, recent } = data.offers;
  const types = Object.entries(counts).sort(([a], [b]) => a.localeCompare(b));
  const most = Math.max(1, ...types.map(([, c]) => c.accepted + c.declined));
  const declined = recent.filter((o) => !o.accepted);
  const reasons = new Map();
  for (const o of declined) {
    const key = reasonGroup(o.reason);
    const r = reasons.get(key) ?? { reason: key, example: o.reason, count: 0, last: 0 };
    r.count += 1;
    if (o.received_at >= r.last) [r.last, r.example] = [o.received_at, o.reason];
    reasons.set(key, r);
  }
  const ranked = [...reasons.values()].sort((a, b) => b.count - a.count);
  const bars = types.map(([type, c]) => {
    const total = c.accepted + c.declined;
    return html`<div class="offer-row"><span class="offer-type">${type.replace(/Task$/, "")}</span>
      <span class="stack" role="img" aria-label="${type}: ${c.accepted} accepted, ${c.declined} declined">
        <span class="accepted" style="width:${(c.accepted / most) * 100}%"></span><span class="declined" style="width:${(c.declined / most) * 100}%"></span>
      </span><span class="offer-num"><span class="good">${c.accepted}</span> / <span class="muted">${c.declined}</span> · ${fmtPct(c.accepted / total)}</span></div>`;
  });
  patch($("offers"), html`
    ${types.length ? html`<div class="offer-bars">${bars}</div>
      <p class="legend-line"><span class="swatch accepted"></span>accepted <span class="swatch declined"></span>declined · all time</p>`
      : empty("No offers yet.")}
    <h3>Why offers were declined <small>last ${recent.length} offers</small></h3>
    ${ranked.length ? html`<ul class="reasons">${ranked.map((r) => html`<li><span class="count">${r.count}</span>
      <span class="reason" title="${r.example}">${r.reason}</span><span class="muted nowrap">${fmtAgo(r.last)}</span></li>`)}</ul>` : empty("None declined.")}
    ${declined.length ? html`<h3>Latest declines</h3><table class="compact"><caption class="sr-only">Latest declined offers</caption>
      <thead><tr><th scope="col">When</th><th scope="col">Type</th><th scope="col">Model</th><th scope="col">Reason</th></tr></thead>
      <tbody>${declined.slice(0, 5).map((o) => html`<tr><td class="nowrap muted">${fmtAgo(o.received_at)}</td>
        <td><span class="kind ${kindClass(o.kind)}">${o.kind}</span></td><td title="${o.model}">${shortModel(o.model)}</td>
        <td>${o.reason}</td></tr>`)}</tbody></table>` : ""}`);
}

function renderStanding() {
  const s = data.standing;
  const byGroup = Map.groupBy(s.groups, (g) => g.group);
  patch($("standing"), html`<p class="standing-line">
      ${s.registered ? html`Rank <strong>${s.rank ?? "—"}</strong> of ${s.nodes} · incentive <strong>${fmtNum(s.incentive, 4)}</strong>`
        : html`<span class="bad">Hotkey not registered on the metagraph</span>`}
      · estimated real-time weight <strong>${fmtNum(s.estimated_realtime_weight, 3)}</strong>
      <span class="muted">· metagraph ${s.synced_at ? `synced ${fmtAgo(s.synced_at)}` : "never synced"}</span></p>
    <table class="standing">
      <caption class="sr-only">Quality q against the leader's, the resulting n, wins and failures per group and window</caption>
      <thead><tr><th scope="col">Group</th><th scope="col">Window</th><th scope="col" class="num">q / leader</th>
        <th scope="col">n</th><th scope="col" class="num">Wins</th><th scope="col" class="num">Fails</th></tr></thead>
      ${[...byGroup].map(([group, rows]) => html`<tbody>${rows.map((g, i) => html`<tr class="${g.q > 0 ? "" : "dim"}">
        ${i === 0 ? html`<th scope="rowgroup" rowspan="${rows.length}">${group}</th>` : ""}
        <td>${g.days} d</td>
        <td class="num">${fmtTick(g.q)} <span class="muted">/ ${fmtTick(g.leader_q)}</span></td>
        <td>${meter("n", g.n, fmtNum(g.n, 2), "ok", true)}</td>
        <td class="num">${g.wins}</td><td class="num ${g.failures ? "bad" : ""}">${g.failures}</td></tr>`)}</tbody>`)}
    </table>`);
}

/* ---------- wiring ---------- */

function init() {
  $("state-filter").addEventListener("change", (e) => {
    ui.state = e.target.value;
    ui.offset = 0;
    load("jobs");
  });
  $("prev").addEventListener("click", () => { ui.offset = Math.max(0, ui.offset - PAGE_SIZE); load("jobs"); });
  $("next").addEventListener("click", () => { ui.offset += PAGE_SIZE; load("jobs"); });
  // A click anywhere on a row selects its job (the task id link does the same for the keyboard).
  $("jobs").addEventListener("click", (e) => {
    const row = e.target.closest("tr[data-task]");
    if (row && !e.target.closest("a")) location.hash = jobLink(row.dataset.task);
  });
  $("detail").addEventListener("click", (e) => {
    const tab = e.target.closest("[data-log]");
    if (tab) {
      ui.logTab = tab.dataset.log;
      renderDetail();
    } else if (e.target.closest(".close")) {
      e.preventDefault();
      history.replaceState(null, "", location.pathname + location.search);
      selectFromHash();
    }
  });
  window.addEventListener("hashchange", selectFromHash);
  window.addEventListener("resize", debounce(() => {
    if (data.gpus) renderGpus();
    renderDetail();
  }, 150));
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
  selectFromHash();
  refresh();
}

init();
