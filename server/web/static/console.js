// The operators' console: the admin API (/v1/admin/...) behind the admin key, in one page.
// Everything shown comes from the API; the only state kept here is the key (this tab's
// sessionStorage) and the system figures' recent points for the plots.
"use strict";

const POLL_MS = 2000; // how often the system figures are read
const SERIES_POINTS_MAX = 150; // points kept per plot: 5 minutes at POLL_MS
const JOURNAL_LIMIT = 20;
const OWN_POLL_OP = "admin.system"; // the console's own polling, left out of the rates
const KEY_STORAGE = "manor.console.admin_key";

const $ = (test) => document.querySelector(`[data-test="${test}"]`);
const state = {
  key: sessionStorage.getItem(KEY_STORAGE) || "",
  player: "",
  beforeSeq: null, // the journal page shown: null = newest
  nextBeforeSeq: null,
  grantId: null, // kept while a grant is retried, so a retry never grants twice
  grantPayload: "",
  samples: [], // [{t, requests, coins}] for the plots, at most SERIES_POINTS_MAX
  timer: null,
};

class ApiError extends Error {
  constructor(status, code, message, body) {
    super(`${code}: ${message}`);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

async function api(method, path, body) {
  const init = { method, headers: { Authorization: `Bearer ${state.key}` } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data = null;
  try {
    data = await response.json();
  } catch {
    throw new ApiError(response.status, `HTTP_${response.status}`, "not JSON", null);
  }
  if (!response.ok) {
    const e = data && data.error ? data.error : { code: `HTTP_${response.status}`, message: "" };
    throw new ApiError(response.status, e.code, e.message, data);
  }
  return data;
}

function showError(error) {
  const box = $("console-error");
  box.textContent = error ? String(error.message || error) : "";
  box.hidden = !error;
}

function cells(row, values) {
  for (const value of values) {
    const td = document.createElement("td");
    if (value instanceof Node) td.append(value);
    else td.textContent = value === null || value === undefined ? "" : String(value);
    row.append(td);
  }
  return row;
}

function fill(test, rows) {
  const body = $(test).querySelector("tbody");
  body.replaceChildren(...rows);
}

const when = (ms) => (ms ? new Date(ms).toLocaleString() : "");

// --- key -----------------------------------------------------------------------------

async function openConsole() {
  try {
    const rules = await api("GET", "/v1/admin/rules");
    sessionStorage.setItem(KEY_STORAGE, state.key);
    showError(null);
    showRules(rules);
    document.getElementById("main").hidden = false;
    document.getElementById("key-card").hidden = true;
    pollSystem();
  } catch (error) {
    document.getElementById("main").hidden = true;
    showError(error.code === "UNAUTHORIZED" ? "That key is not the admin key." : error);
  }
}

// --- player --------------------------------------------------------------------------

async function lookUp() {
  const status = $("lookup-status");
  const query = new URLSearchParams({ limit: String(JOURNAL_LIMIT) });
  if (state.beforeSeq) query.set("before_seq", String(state.beforeSeq));
  try {
    const view = await api("GET", `/v1/admin/players/${encodeURIComponent(state.player)}?${query}`);
    status.textContent = `${view.player} (rules ${view.rules_version})`;
    showPlayer(view);
  } catch (error) {
    $("player").hidden = error.code !== "PLAYER_NOT_FOUND";
    if (error.code === "PLAYER_NOT_FOUND") {
      status.textContent = `${state.player}: no such player yet (a grant creates the wallet)`;
      showPlayer(null);
    } else {
      status.textContent = String(error.message);
    }
  }
}

function showPlayer(view) {
  $("player").hidden = false;
  const v = view || { balance: 0, held: 0, available: 0, debt: 0, batches: [],
    signin: { streak: 0 }, farm: { plots: [] }, journal: { entries: [] },
    verify: { ok: true, entries: 0, problems: [] } };
  $("player-balance").textContent = v.balance;
  $("player-held").textContent = v.held;
  $("player-available").textContent = v.available;
  $("player-debt").textContent = v.debt;
  $("player-streak").textContent = v.signin.streak;
  const verify = $("player-verify");
  verify.textContent = v.verify.ok
    ? `ok (${v.verify.entries} entries)` : `PROBLEMS: ${v.verify.problems.join("; ")}`;
  verify.className = v.verify.ok ? "" : "bad";
  fill("player-batches", v.batches.map((b) => cells(document.createElement("tr"),
    [b.expires, b.coins])));
  fill("player-farm", v.farm.plots.map((p) => cells(document.createElement("tr"), p.empty
    ? [p.plot, "(empty)", "", "", "", ""]
    : [p.plot, p.seed, p.stage, when(p.ripe_at_ms), p.yield_coins, p.stolen_coins])));
  fill("player-journal", v.journal.entries.map((e) => {
    const undo = document.createElement("button");
    undo.textContent = "reverse…";
    undo.dataset.test = "journal-reverse";
    undo.addEventListener("click", () => {
      document.getElementById("reverse-transfer").value = e.transfer_id;
      document.getElementById("reverse-reason").focus();
    });
    const row = cells(document.createElement("tr"), [e.seq, when(e.ts_ms), e.transfer_id,
      e.account, e.amount, e.balance_after, e.ref, undo]);
    row.dataset.test = "journal-row";
    row.dataset.transferId = e.transfer_id;
    return row;
  }));
  state.nextBeforeSeq = v.journal.next_before_seq || null;
  $("journal-older").disabled = !state.nextBeforeSeq;
  $("journal-newest").disabled = !state.beforeSeq;
}

function result(test, ok, text) {
  const p = $(test);
  p.textContent = text;
  p.className = `result ${ok ? "good" : "bad"}`;
}

async function grant(event) {
  event.preventDefault();
  const coins = Number(document.getElementById("grant-coins").value);
  const reason = document.getElementById("grant-reason").value.trim();
  const payload = JSON.stringify([state.player, coins, reason]);
  if (state.grantId === null || state.grantPayload !== payload) {
    // A new grant gets a new id; pressing Grant again after a failure reuses it.
    state.grantId = `console-${Date.now()}-${Math.random().toString(36).slice(2, 10)}`;
    state.grantPayload = payload;
  }
  try {
    const done = await api("POST", "/v1/admin/grant",
      { player: state.player, coins, reason, grant_id: state.grantId });
    result("grant-result", true, `${done.already ? "Already granted" : "Granted"} ${done.coins}`
      + ` coins (${done.transfer_id}); balance ${done.balance}, debt ${done.debt}`);
    state.grantId = null;
    state.beforeSeq = null;
    await lookUp();
  } catch (error) {
    result("grant-result", false, `${error.message} (press Grant again to retry safely)`);
  }
}

async function reverse(event) {
  event.preventDefault();
  const transferId = document.getElementById("reverse-transfer").value.trim();
  const reason = document.getElementById("reverse-reason").value.trim();
  try {
    const done = await api("POST", "/v1/admin/reverse",
      { player: state.player, transfer_id: transferId, reason });
    result("reverse-result", true, `${done.already ? "Already reversed" : "Reversed"}`
      + ` ${done.transfer_id} (${done.reversal_id}): ${done.moved} coins moved,`
      + ` ${done.debt_added} added to debt; balance ${done.balance}`);
    state.beforeSeq = null;
    await lookUp();
  } catch (error) {
    result("reverse-result", false, error.message);
  }
}

// --- rules ---------------------------------------------------------------------------

function showRules(rules) {
  $("console-rules-version").textContent = `rules: ${rules.version}`;
  $("rules-version").textContent = rules.version;
  $("rules-digest").textContent = rules.digest;
  $("rules-timezone").textContent = rules.timezone;
  $("rules-path").textContent = rules.path;
}

async function validateRules() {
  $("rules-changes").replaceChildren();
  try {
    const checked = await api("POST", "/v1/admin/rules/validate");
    if (checked.ok) {
      result("rules-result", true, `${checked.source}: valid, version ${checked.version}`
        + ` (${checked.digest})`);
    } else {
      result("rules-result", false, `${checked.source}: ${checked.problems.length} problem(s)`);
      listChanges(checked.problems);
    }
  } catch (error) {
    result("rules-result", false, error.message);
  }
}

function listChanges(lines) {
  $("rules-changes").replaceChildren(...lines.map((line) => {
    const li = document.createElement("li");
    li.textContent = line;
    return li;
  }));
}

async function reloadRules() {
  try {
    const done = await api("POST", "/v1/admin/rules/reload");
    showRules(done);
    result("rules-result", true, done.changed
      ? `Reloaded: ${done.previous_version} -> ${done.version};`
        + ` ${done.processes_notified} process(es) told`
      : `Reloaded: unchanged (${done.version})`);
    listChanges(done.changes);
  } catch (error) {
    result("rules-result", false, error.message);
    const problems = error.body && error.body.error && error.body.error.problems;
    listChanges(problems || []);
  }
}

// --- system --------------------------------------------------------------------------

const sum = (obj) => Object.values(obj).reduce((a, b) => a + b, 0);

function rates(older, newer) {
  // op -> [requests/s, errors/s] between two samples (a process restart resets counters)
  const seconds = Math.max((newer.t - older.t) / 1000, 0.001);
  const out = {};
  for (const [op, outcomes] of Object.entries(newer.requests)) {
    if (op === OWN_POLL_OP) continue;
    const before = older.requests[op] || {};
    const all = Math.max(sum(outcomes) - sum(before), 0);
    const ok = Math.max((outcomes.ok || 0) - (before.ok || 0), 0);
    out[op] = [all / seconds, Math.max(all - ok, 0) / seconds];
  }
  return out;
}

function seriesOf(pick) {
  const names = new Set();
  for (const s of state.samples) for (const name of Object.keys(pick(s) || {})) names.add(name);
  return [...names].sort().map((name) => ({
    name,
    points: state.samples.filter((s) => pick(s)).map((s) => [s.t, (pick(s)[name] || 0)]),
  }));
}

function showSystem(figures) {
  const now = Date.now();
  const sample = { t: now, requests: figures.requests, coins: figures.coins };
  const previous = state.samples[state.samples.length - 1];
  if (previous) {
    sample.rates = rates(previous, sample);
  }
  state.samples.push(sample);
  if (state.samples.length > SERIES_POINTS_MAX) state.samples.shift();
  const r = sample.rates || {};
  $("sys-sockets").textContent = figures.sockets;
  $("sys-ops-rate").textContent = Object.values(r).reduce((a, x) => a + x[0], 0).toFixed(2);
  $("sys-errors-rate").textContent = Object.values(r).reduce((a, x) => a + x[1], 0).toFixed(2);
  $("sys-timers-pending").textContent = figures.timers.pending;
  $("sys-timers-late").textContent = figures.timers.late_ms_max;
  $("sys-outbox").textContent = figures.outbox_in_flight;
  $("sys-backlog").textContent = figures.triggers.backlog;
  $("sys-dead-letters").textContent = figures.triggers.dead_letters;
  $("system-updated").textContent = `updated ${new Date(now).toLocaleTimeString()}`;
  const ratesOf = (i) => (s) => s.rates && Object.fromEntries(
    Object.entries(s.rates).map(([op, x]) => [op, x[i]]));
  ManorPlot.draw($("plot-ops"), seriesOf(ratesOf(0)));
  ManorPlot.draw($("plot-errors"), seriesOf(ratesOf(1)).filter(
    (s) => s.points.some((p) => p[1] > 0)));
  ManorPlot.draw($("plot-minted"), seriesOf((s) => s.coins.minted));
  ManorPlot.draw($("plot-burned"), seriesOf((s) => s.coins.burned));
  fill("sys-ops-table", Object.entries(figures.requests).sort().map(([op, outcomes]) => {
    const errors = sum(outcomes) - (outcomes.ok || 0);
    const row = cells(document.createElement("tr"), [op, sum(outcomes), errors,
      Object.entries(outcomes).map(([k, n]) => `${k} ${n}`).join(", ")]);
    row.dataset.test = "sys-op-row";
    row.dataset.op = op;
    return row;
  }));
}

async function pollSystem() {
  clearTimeout(state.timer);
  try {
    showSystem(await api("GET", "/v1/admin/system"));
    showError(null);
  } catch (error) {
    showError(`system figures: ${error.message}`);
  }
  state.timer = setTimeout(pollSystem, POLL_MS);
}

// --- wiring --------------------------------------------------------------------------

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.key = document.getElementById("key").value.trim();
  openConsole();
});
document.getElementById("key-forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_STORAGE);
  state.key = "";
  location.reload();
});
document.getElementById("lookup-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.player = document.getElementById("lookup-player").value.trim();
  state.beforeSeq = null;
  lookUp();
});
document.getElementById("journal-older").addEventListener("click", () => {
  state.beforeSeq = state.nextBeforeSeq;
  lookUp();
});
document.getElementById("journal-newest").addEventListener("click", () => {
  state.beforeSeq = null;
  lookUp();
});
document.getElementById("grant-form").addEventListener("submit", grant);
document.getElementById("reverse-form").addEventListener("submit", reverse);
$("rules-validate").addEventListener("click", validateRules);
$("rules-reload").addEventListener("click", reloadRules);
if (state.key) openConsole();
