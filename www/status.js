// The live status page behind /status.html: polls percore's admin endpoint (/status.json)
// every second and draws one chart per metric, one line per worker, over the last minute.
//
// /status.json holds cumulative counters per worker. A rate is the difference between two
// polls divided by the time between the two reports the counters came from (`reported_ms`),
// not between the polls: workers report once a second, out of step with this page.
"use strict";

const POLL_MS = 1000;
// A poll that takes longer has failed (the admin endpoint serves one client at a time).
const TIMEOUT_MS = 3000;
const WINDOW_MS = 60_000;
// percore's default admin port (--admin 127.0.0.1:7391).
const ADMIN_PORT = 7391;
// Workers report at least this often while they count anything (src/worker/mod.rs)...
const REPORT_MS = 1000;
// ...so one silent for longer has counted nothing: its rates are 0.
const SILENT_MS = 2000;
// Points further apart than this are not joined (the endpoint was unreachable between them).
const GAP_MS = 3500;

const ui = Object.fromEntries(
  ["source", "state", "problem", "workers", "requests", "rate", "active", "websockets", "uptime", "legend", "charts"]
    .map((id) => [id, document.getElementById(id)]),
);

// The charts: which figure each draws, how its values read, and how its caption adds up the
// workers (a sum, or for latency the slowest worker).
const CHARTS = [
  { key: "active", title: "Active connections", format: formatCount, combine: sum },
  { key: "requests", title: "Requests/s", format: formatCount, combine: sum },
  { key: "websockets", title: "WebSocket connections", format: formatCount, combine: sum },
  { key: "p50", title: "Latency p50", format: formatMicros, combine: highest },
  { key: "p99", title: "Latency p99", format: formatMicros, combine: highest },
  { key: "bytes", title: "Bytes/s sent", format: formatBytes, combine: sum },
];

// Distinct colours for the first workers, then hues a golden angle apart.
const PALETTE = ["#0550ae", "#1a7f37", "#cf222e", "#9a6700", "#8250df", "#1b7c83", "#bf3989", "#57606a"];

function colour(worker) {
  return PALETTE[worker] ?? `hsl(${(worker * 137.5) % 360} 60% 40%)`;
}

const grouped = new Intl.NumberFormat("en-US");

function sum(values) {
  return values.reduce((total, v) => (v === null ? total : (total ?? 0) + v), null);
}

function highest(values) {
  return values.reduce((top, v) => (v === null ? top : Math.max(top ?? v, v)), null);
}

// Three significant digits with an SI prefix: 0, 0.25, 12.3, 4.56k, 7.89M.
function formatCount(v) {
  if (v === null) return "–";
  for (const [scale, prefix] of [[1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
    if (Math.abs(v) >= scale) return `${+(v / scale).toPrecision(3)}${prefix}`;
  }
  return `${+v.toPrecision(3)}`;
}

function formatBytes(v) {
  if (v === null) return "–";
  for (const [scale, unit] of [[1e9, "GB/s"], [1e6, "MB/s"], [1e3, "kB/s"]]) {
    if (Math.abs(v) >= scale) return `${+(v / scale).toPrecision(3)} ${unit}`;
  }
  return `${+v.toPrecision(3)} B/s`;
}

function formatMicros(v) {
  if (v === null) return "–";
  if (v >= 1e6) return `${+(v / 1e6).toPrecision(3)} s`;
  if (v >= 1e3) return `${+(v / 1e3).toPrecision(3)} ms`;
  return `${+v.toPrecision(3)} µs`;
}

function formatUptime(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor(s / 60) % 60} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor(s / 3600) % 24} h`;
}

// Whether the page's own host is this machine, where a loopback-bound endpoint is reachable.
function isLoopback(hostname) {
  return hostname === "" || hostname === "localhost" || hostname === "[::1]" || hostname.startsWith("127.");
}

// Where /status.json is: ?admin=HOST:PORT (or a URL), else this page's host on port 7391.
function adminUrl() {
  const given = new URLSearchParams(location.search).get("admin");
  if (given) {
    const base = /^https?:\/\//i.test(given) ? given : `http://${given}`;
    return { url: new URL("/status.json", base), given: true };
  }
  const host = location.hostname || "127.0.0.1"; // A page opened from a file has no host.
  return { url: new URL(`http://${host}:${ADMIN_PORT}/status.json`), given: false };
}

// Why a fetch that never got a response may have failed, in the words of this setup.
function unreachable(admin, why) {
  let text = `Cannot reach percore's admin endpoint at ${admin.url.href} (${why}).`;
  if (!isLoopback(location.hostname) && admin.url.hostname === location.hostname) {
    text += " The admin endpoint listens on 127.0.0.1 by default, which only the server's own" +
      " machine can reach, and this page is viewed from another: view it on the server, or" +
      ` start percore with --admin 0.0.0.0:${admin.url.port || ADMIN_PORT}` +
      " (then anyone who can reach that port reads its metrics).";
  } else {
    text += ` Is percore running with its admin endpoint on ${admin.url.host} (--admin, not off)?`;
  }
  if (!admin.given) text += " If its --admin address is another, open this page with ?admin=HOST:PORT.";
  if (location.protocol === "https:") {
    text += " This page came over HTTPS; the browser may refuse to read plain http:// from it.";
  }
  return text;
}

// Fetches /status.json; throws an Error whose message is meant for the page.
async function fetchStatus(admin) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
  let response;
  try {
    response = await fetch(admin.url, { cache: "no-store", signal: abort.signal });
  } catch {
    // Refused, unresolvable, or not readable cross-origin: browsers do not say which.
    const why = abort.signal.aborted ? `no answer within ${TIMEOUT_MS / 1000} s` : "no response this page may read";
    throw new Error(unreachable(admin, why));
  } finally {
    clearTimeout(timer);
  }
  if (!response.ok) {
    throw new Error(
      `percore's admin endpoint at ${admin.url.href} answered ${response.status} ${response.statusText}:` +
        " is that address percore's --admin, and is the server recent enough to serve /status.json?",
    );
  }
  let json;
  try {
    json = await response.json();
  } catch {
    json = null;
  }
  if (!Array.isArray(json?.workers) || !Array.isArray(json?.latency_bounds_us)) {
    throw new Error(`${admin.url.href} answered, but not with the JSON this page reads.`);
  }
  return json;
}

// The latency at quantile q (0..1) of the samples counted in `buckets`, in µs, interpolated
// within its bucket as Prometheus's histogram_quantile does; null when there are none. In the
// last bucket (+Inf) all that is known is that it is above the last bound.
function quantile(buckets, bounds, q) {
  const total = buckets.reduce((a, b) => a + b, 0);
  if (total <= 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < buckets.length; i++) {
    const n = buckets[i];
    if (n > 0 && seen + n >= rank) {
      if (i >= bounds.length) return bounds[bounds.length - 1];
      const lower = i === 0 ? 0 : bounds[i - 1];
      return lower + ((bounds[i] - lower) * (rank - seen)) / n;
    }
    seen += n;
  }
  return bounds[bounds.length - 1];
}

// One worker as the page follows it: its latest sample, whether it has gone silent, and the
// rates and percentiles between its latest two reports.
function follow(state, sample, uptime, bounds) {
  const silent = sample.reported_ms === 0 || uptime - sample.reported_ms > SILENT_MS;
  const idle = { requests: 0, bytes: 0, p50: null, p99: null };
  if (!state) return { sample, silent, rates: silent ? idle : null };
  const before = state.sample;
  const elapsed = sample.reported_ms - before.reported_ms;
  if (elapsed <= 0) {
    // No report since the last poll: nothing counted if the worker is silent, else the
    // report is on its way and the last rates stand until it comes.
    return { sample, silent, rates: silent ? idle : state.rates };
  }
  // After a silence the new counts cover one report interval at most, not the whole silence.
  const span = state.silent ? Math.min(elapsed, REPORT_MS) : elapsed;
  const latencies = sample.latency_buckets.map((n, i) => n - (before.latency_buckets[i] ?? 0));
  const rates = {
    requests: ((sample.requests - before.requests) * 1000) / span,
    bytes: ((sample.bytes_sent - before.bytes_sent) * 1000) / span,
    p50: quantile(latencies, bounds, 0.5),
    p99: quantile(latencies, bounds, 0.99),
  };
  return { sample, silent: false, rates };
}

// What the page has seen: one entry per poll in the last minute, and each worker's state.
let history = [];
let workers = [];
let charts = [];

// Counters never go back: if one does, or the worker count changes, percore restarted.
function restarted(json) {
  if (json.workers.length !== workers.length) return true;
  return json.workers.some((w, i) => {
    const before = workers[i].sample;
    return w.reported_ms < before.reported_ms || w.requests < before.requests;
  });
}

function update(json) {
  if (restarted(json)) {
    history = [];
    workers = json.workers.map(() => null);
    buildCharts(json.workers.length);
  }
  workers = json.workers.map((w, i) => follow(workers[i], w, json.uptime_ms, json.latency_bounds_us));
  const rate = (key) => workers.map((w) => w.rates?.[key] ?? null);
  history.push({
    t: json.uptime_ms,
    values: {
      active: json.workers.map((w) => w.connections_active),
      requests: rate("requests"),
      websockets: json.workers.map((w) => w.ws_open),
      p50: rate("p50"),
      p99: rate("p99"),
      bytes: rate("bytes"),
    },
  });
  history = history.filter((entry) => entry.t >= json.uptime_ms - WINDOW_MS);

  const now = history[history.length - 1].values;
  ui.workers.textContent = String(json.workers.length);
  ui.requests.textContent = grouped.format(sum(json.workers.map((w) => w.requests)) ?? 0);
  ui.rate.textContent = formatCount(sum(now.requests));
  ui.active.textContent = grouped.format(sum(now.active) ?? 0);
  ui.websockets.textContent = grouped.format(sum(now.websockets) ?? 0);
  ui.uptime.textContent = formatUptime(json.uptime_ms);
  ui.uptime.title = `percore ${json.version}`;
  drawAll();
}

function buildCharts(count) {
  ui.legend.replaceChildren(
    ...Array.from({ length: count }, (_, w) => {
      const item = document.createElement("li");
      item.style.setProperty("--colour", colour(w));
      item.textContent = `worker ${w}`;
      return item;
    }),
  );
  charts = CHARTS.map((spec) => {
    const figure = document.createElement("figure");
    figure.className = "chart";
    figure.id = `chart-${spec.key}`;
    const caption = document.createElement("figcaption");
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = spec.title;
    const now = document.createElement("span");
    now.className = "now";
    const peak = document.createElement("span");
    peak.className = "max";
    const readings = document.createElement("span");
    readings.className = "readings";
    readings.append("now ", now, " · peak ", peak);
    caption.append(title, " ", readings);
    const canvas = document.createElement("canvas");
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", `${spec.title}, last minute, one line per worker`);
    figure.append(caption, canvas);
    return { spec, figure, canvas, now, peak };
  });
  ui.charts.replaceChildren(...charts.map((chart) => chart.figure));
}

function drawAll() {
  for (const chart of charts) draw(chart);
}

// 1, 2 or 5 times a power of ten, at least v: the top of a chart's scale.
function niceCeil(v) {
  if (!(v > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(v));
  const step = [1, 2, 5, 10].find((m) => m * power >= v * (1 - 1e-9)) ?? 10;
  return step * power;
}

function draw({ spec, canvas, now, peak }) {
  const series = history.map((entry) => entry.values[spec.key]);
  const combined = series.map(spec.combine);
  now.textContent = spec.format(combined[combined.length - 1] ?? null);
  peak.textContent = spec.format(highest(combined));

  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);

  const left = 64;
  const right = width - 8;
  const top = 8;
  const bottom = height - 22;
  const end = history.length ? history[history.length - 1].t : 0;
  const x = (t) => left + ((t - (end - WINDOW_MS)) / WINDOW_MS) * (right - left);
  const scale = niceCeil(highest(series.map(highest)) ?? 0);
  const y = (v) => bottom - (v / scale) * (bottom - top);

  // The grid: a line at 0, half and the top of the scale, labelled; the time below.
  ctx.font = "12px system-ui, sans-serif";
  ctx.lineWidth = 1;
  ctx.strokeStyle = "#ddd";
  ctx.fillStyle = "#666";
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const v of [0, scale / 2, scale]) {
    const at = Math.round(y(v)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(left, at);
    ctx.lineTo(right, at);
    ctx.stroke();
    ctx.fillText(spec.format(v), left - 6, at);
  }
  ctx.textBaseline = "alphabetic";
  ctx.textAlign = "left";
  ctx.fillText("60 s ago", left, height - 4);
  ctx.textAlign = "right";
  ctx.fillText("now", right, height - 4);

  // One line per worker; a missing value or a long gap breaks it, and a point with no
  // neighbour to join is drawn as a dot.
  ctx.lineWidth = 1.5;
  ctx.lineJoin = "round";
  for (let w = 0; w < workers.length; w++) {
    ctx.strokeStyle = colour(w);
    ctx.fillStyle = colour(w);
    let run = [];
    const finish = () => {
      if (run.length === 1) ctx.fillRect(run[0][0] - 1.5, run[0][1] - 1.5, 3, 3);
      if (run.length > 1) {
        ctx.beginPath();
        run.forEach(([px, py], i) => (i === 0 ? ctx.moveTo(px, py) : ctx.lineTo(px, py)));
        ctx.stroke();
      }
      run = [];
    };
    history.forEach((entry, i) => {
      const v = entry.values[spec.key][w];
      if (v === null || v === undefined) return finish();
      if (i > 0 && entry.t - history[i - 1].t > GAP_MS) finish();
      run.push([x(entry.t), y(v)]);
    });
    finish();
  }
}

function showState(state) {
  ui.state.textContent = state;
  ui.state.dataset.state = state;
}

function showProblem(text) {
  ui.problem.hidden = text === null;
  ui.problem.textContent = text ?? "";
}

async function poll(admin) {
  const started = performance.now();
  try {
    update(await fetchStatus(admin));
    showState("live");
    showProblem(null);
  } catch (err) {
    showState("unreachable");
    showProblem(err.message);
  }
  setTimeout(() => poll(admin), Math.max(0, POLL_MS - (performance.now() - started)));
}

function start() {
  let admin;
  try {
    admin = adminUrl();
  } catch {
    showState("unreachable");
    showProblem("The ?admin= of this page's address is not an address: write it as HOST:PORT.");
    return;
  }
  ui.source.textContent = admin.url.href;
  window.addEventListener("resize", drawAll);
  poll(admin);
}

start();
