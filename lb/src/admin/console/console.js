// Tandem console: the pair at a glance, live figures, and actions behind the admin token.
//
// Reads /status (this node), /peers (the other node(s), fetched by this node) and /events
// (Server-Sent Events). Writes only through the admin API's mutations, with the token the
// operator typed, kept in this tab's session storage and sent as the bearer header.
// Hand-written, no framework, no build step; the page is built with DOM calls and text
// nodes only, so nothing a node reports is ever parsed as markup.
"use strict";

const POLL_MS = 1000;
const HISTORY_S = 300;
const TOKEN_KEY = "tandem-admin-token";
const MAX_EVENTS = 200;

const state = {
  self: null, // this node's /status
  peers: [], // /peers
  history: new Map(), // "node/service" -> [{t, cps, active, bps, rps}]
  last: new Map(), // "node/service" -> {t, accepted, bytes, refused}
  canvases: new Map(), // "node/service" -> canvas
  names: new Map(), // a peer's admin address -> its node name, as last seen
  refreshing: false,
  again: false,
};

// --- small helpers -------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else if (k === "on") for (const [ev, f] of Object.entries(v)) node.addEventListener(ev, f);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function badge(text, kind) {
  return el("span", { class: "badge " + kind, text });
}

function duration(s) {
  if (s === null || s === undefined) return "";
  s = Math.max(0, Math.floor(s));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

function rate(n) {
  if (n >= 100) return n.toFixed(0);
  if (n >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

function bytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return (n >= 100 || i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
}

function roleKind(state) {
  return { MASTER: "ok", BACKUP: "off", FAULT: "bad" }[state] || "warn";
}

function verdictKind(v) {
  return { primary: "ok", secondary: "off", fault: "bad", stopping: "warn", starting: "warn" }[v] || "warn";
}

// --- the token -------------------------------------------------------------------------------

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function showMode() {
  const unlocked = token() !== null;
  const mode = document.getElementById("mode");
  mode.textContent = unlocked ? "actions unlocked" : "read-only";
  mode.className = "badge " + (unlocked ? "warn" : "off");
  document.getElementById("token").hidden = unlocked;
  document.getElementById("unlock-button").hidden = unlocked;
  document.getElementById("lock-button").hidden = !unlocked;
  for (const b of document.querySelectorAll("button[data-action]")) b.disabled = !unlocked;
}

// --- actions -------------------------------------------------------------------------------

// Asks for confirmation with `text`; resolves true when the operator goes ahead.
function confirmAction(title, text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    const go = document.getElementById("confirm-go");
    const cancel = document.getElementById("confirm-cancel");
    const done = (answer) => {
      go.removeEventListener("click", yes);
      cancel.removeEventListener("click", no);
      dialog.removeEventListener("cancel", no);
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const yes = () => done(true);
    const no = () => done(false);
    go.addEventListener("click", yes);
    cancel.addEventListener("click", no);
    dialog.addEventListener("cancel", no);
    dialog.showModal();
  });
}

function showResult(text, ok) {
  const result = document.getElementById("result");
  result.textContent = text;
  result.className = "result" + (ok ? "" : " failed");
  result.hidden = false;
}

// Runs one mutation on `node` (a view: {name, prefix}), after the operator confirms.
async function act(node, title, text, path) {
  if (!(await confirmAction(title, text))) return;
  const headers = {};
  const t = token();
  if (t !== null) headers["Authorization"] = "Bearer " + t;
  let answer;
  try {
    const response = await fetch(node.prefix + path, {
      method: "POST",
      headers,
      cache: "no-store",
      credentials: "omit",
    });
    const body = (await response.text()).trim();
    answer = { ok: response.ok, text: node.name + ": " + (response.ok ? "" : "refused (" + response.status + "): ") + body };
  } catch (e) {
    answer = { ok: false, text: node.name + ": the request failed: " + e };
  }
  showResult(answer.text, answer.ok);
  refreshSoon();
}

function actionButton(label, action, handler, extra) {
  return el("button", Object.assign({ type: "button", "data-action": action, disabled: token() === null, title: token() === null ? "type the admin token to unlock actions" : null, on: { click: handler } }, extra || {}), label);
}

// --- figures over time ---------------------------------------------------------------------

function sample(nodeName, services, now) {
  for (const s of services) {
    const key = nodeName + "/" + s.name;
    const totals = { t: now, accepted: s.accepted, bytes: s.bytes_in + s.bytes_out, refused: s.refused };
    const before = state.last.get(key);
    state.last.set(key, totals);
    if (!before || now <= before.t) continue;
    const dt = (now - before.t) / 1000;
    // A counter that went back (the peer restarted) starts over.
    const d = (a, b) => Math.max(0, a - b) / dt;
    const point = {
      t: now,
      cps: d(totals.accepted, before.accepted),
      active: s.active,
      bps: d(totals.bytes, before.bytes),
      rps: d(totals.refused, before.refused),
    };
    const series = state.history.get(key) || [];
    series.push(point);
    while (series.length && series[0].t < now - HISTORY_S * 1000) series.shift();
    state.history.set(key, series);
  }
}

const LANES = [
  { key: "cps", label: "conn/s", color: "#1f5fa8", format: rate },
  { key: "active", label: "active", color: "#1f7a3a", format: (n) => String(n) },
  { key: "bps", label: "bytes/s", color: "#6b4fa8", format: bytes },
  { key: "rps", label: "refused/s", color: "#b3261e", format: rate },
];

function chartFor(key) {
  let canvas = state.canvases.get(key);
  if (!canvas) {
    canvas = el("canvas", { class: "chart", "data-chart": key });
    state.canvases.set(key, canvas);
  }
  return canvas;
}

// The time the charts span: what the page has seen, at least 30 s, at most HISTORY_S.
function span(series, now) {
  const seen = series.length ? now - series[0].t : 0;
  return Math.min(HISTORY_S * 1000, Math.max(30000, seen));
}

function spanText(ms) {
  return ms >= 60000 ? "last " + Math.round(ms / 60000) + " min" : "last " + Math.round(ms / 1000) + " s";
}

// Draws the four lanes of one service over the time it spans.
function draw(canvas, series, now) {
  const spanMs = span(series, now);
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 480;
  const height = canvas.clientHeight || 110;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const laneWidth = width / 2;
  const laneHeight = height / 2;
  g.font = "11px system-ui, DejaVu Sans, sans-serif";
  LANES.forEach((lane, i) => {
    const x0 = (i % 2) * laneWidth + 6;
    const y0 = Math.floor(i / 2) * laneHeight + 4;
    const w = laneWidth - 12;
    const h = laneHeight - 20;
    const values = series.map((p) => p[lane.key]);
    const highest = Math.max(0, ...values);
    const max = Math.max(1e-9, highest);
    const latest = values.length ? values[values.length - 1] : 0;
    g.fillStyle = "#5b6670";
    g.fillText(lane.label + "  " + lane.format(latest) + "   (max " + lane.format(highest) + ")", x0, y0 + 10);
    g.strokeStyle = "#d5dbe1";
    g.beginPath();
    g.moveTo(x0, y0 + 14 + h);
    g.lineTo(x0 + w, y0 + 14 + h);
    g.stroke();
    if (series.length < 2) return;
    g.strokeStyle = lane.color;
    g.lineWidth = 1.5;
    g.beginPath();
    series.forEach((p, j) => {
      const x = x0 + w - ((now - p.t) / spanMs) * w;
      const y = y0 + 14 + h - (p[lane.key] / max) * h;
      if (j === 0) g.moveTo(x, y);
      else g.lineTo(x, y);
    });
    g.stroke();
  });
}

// --- one node's panel ----------------------------------------------------------------------

// The pair's other node, for sentences: the first peer's name.
function peerName(forNode) {
  const names = [];
  if (state.self) names.push(state.self.node);
  for (const p of state.peers) if (p.status) names.push(p.status.node);
  const others = names.filter((n) => n !== forNode);
  return others.length ? others.join(" / ") : "its peer";
}

function vrrpSection(node, status) {
  if (!status.vrrp.length) return [];
  const rows = status.vrrp.map((v) => {
    if (!v.running) {
      return el("tr", { "data-instance": v.name }, el("td", {}, v.name), el("td", {}, el("span", { "data-role-of": v.name }, badge("not running", "warn"))), el("td", { colspan: 3 }));
    }
    const why = v.why ? v.previous_state + " → " + v.state + " " + duration(v.seconds_in_state) + " ago: " + v.why : "";
    return el(
      "tr",
      { "data-instance": v.name },
      el("td", {}, v.name, el("span", { class: "note" }, v.mode === "cloud" ? "cloud mode" : v.vips.join(", "))),
      el("td", {}, el("span", { "data-role-of": v.name }, badge(v.state, roleKind(v.state))), el("span", { class: "why" }, why), v.host_fault ? el("span", { class: "error" }, v.host_fault) : null),
      el("td", { class: "num" }, String(v.priority), v.effective_priority !== v.priority ? el("span", { class: "note" }, "effective " + v.effective_priority) : null),
      el("td", {}, v.master || "none seen"),
      el("td", { class: "num" }, String(v.transitions))
    );
  });
  return [
    el("h3", {}, "VRRP"),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "instance"), el("th", {}, "role, last transition"), el("th", { class: "num" }, "priority"), el("th", {}, "master"), el("th", { class: "num" }, "transitions"))), el("tbody", {}, rows)),
  ];
}

function servicesSection(node, status, now) {
  if (!status.services.length) return [];
  const rows = [];
  const charts = [];
  for (const s of status.services) {
    const key = status.node + "/" + s.name;
    const series = state.history.get(key) || [];
    const latest = series.length ? series[series.length - 1] : null;
    rows.push(
      el(
        "tr",
        { "data-service": s.name },
        el("td", {}, s.name, el("span", { class: "note" }, s.listen + " → " + s.pool)),
        el("td", { class: "num" }, latest ? rate(latest.cps) : "…"),
        el("td", { class: "num" }, String(s.active)),
        el("td", { class: "num" }, latest ? bytes(latest.bps) : "…"),
        el("td", { class: "num" }, String(s.refused))
      )
    );
    const canvas = chartFor(key);
    charts.push(el("div", { class: "chart-box" }, el("span", { class: "note" }, s.name + ", " + spanText(span(series, now))), canvas));
    requestAnimationFrame(() => draw(canvas, series, now));
  }
  return [
    el("h3", {}, "Services"),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "service"), el("th", { class: "num" }, "conn/s"), el("th", { class: "num" }, "active"), el("th", { class: "num" }, "bytes/s"), el("th", { class: "num" }, "refused"))), el("tbody", {}, rows)),
    el("div", { class: "charts" }, charts),
  ];
}

function poolsSection(node, status) {
  const out = [];
  for (const p of status.pools) {
    const rows = p.backends.map((b) => {
      let health;
      if (b.drained) health = badge("drained", "warn");
      else if (b.ejected) health = badge("ejected", "bad");
      else health = badge(b.up ? "up" : "down", b.up ? "ok" : "bad");
      const checked = b.health;
      const since = checked && checked.seconds_since_change !== null ? "since " + duration(checked.seconds_since_change) + " ago" : checked ? "" : "not checked";
      const drain = b.drained
        ? actionButton("Enable", "enable", () => act(node, "Enable " + b.addr, node.name + " will send new connections to " + b.addr + " in pool " + p.name + " again.", "/pools/" + encodeURIComponent(p.name) + "/backends/" + encodeURIComponent(b.addr) + "/enable"))
        : actionButton("Drain", "drain", () => act(node, "Drain " + b.addr, node.name + " will send no new connections to " + b.addr + " in pool " + p.name + "; the " + b.active + " open one(s) run to their end.", "/pools/" + encodeURIComponent(p.name) + "/backends/" + encodeURIComponent(b.addr) + "/drain"));
      return el(
        "tr",
        { "data-backend": b.addr, "data-pool": p.name, "data-health": b.drained ? "drained" : b.up ? "up" : "down" },
        el("td", {}, b.addr, el("span", { class: "note" }, b.role + ", weight " + b.weight)),
        el("td", {}, el("span", { class: "health" }, health), el("span", { class: "why" }, since), checked && checked.last_error ? el("span", { class: "error" }, "last check error: " + checked.last_error) : null),
        el("td", { class: "num" }, String(b.active)),
        el("td", { class: "num" }, String(b.connect_failures)),
        el("td", {}, drain)
      );
    });
    out.push(
      el("h3", {}, "Pool " + p.name + " · " + p.usable + " of " + p.total + " usable"),
      el("table", { "data-pool-table": p.name }, el("thead", {}, el("tr", {}, el("th", {}, "backend"), el("th", {}, "health"), el("th", { class: "num" }, "active"), el("th", { class: "num" }, "connect failures"), el("th", {}))), el("tbody", {}, rows))
    );
  }
  return out;
}

function appsSection(status) {
  if (!status.apps || !status.apps.length) return [];
  const kind = (s) => ({ running: "ok", failed: "bad", stopped: "off" })[s] || "warn";
  const rows = status.apps.map((a) =>
    el(
      "tr",
      { "data-app": a.name },
      el("td", {}, a.name, el("span", { class: "note" }, a.run_on === "primary" ? "on the master of " + a.instance : "on every node")),
      el("td", {}, badge(a.disabled ? "disabled" : a.state, a.disabled ? "warn" : kind(a.state)), el("span", { class: "why" }, "for " + duration(a.seconds_in_state)), a.last_error ? el("span", { class: "error" }, a.last_error) : null),
      el("td", { class: "num" }, a.pid === null ? "" : String(a.pid)),
      el("td", { class: "num" }, String(a.restarts_total))
    )
  );
  return [el("h3", {}, "Applications"), el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "application"), el("th", {}, "state"), el("th", { class: "num" }, "pid"), el("th", { class: "num" }, "restarts"))), el("tbody", {}, rows))];
}

function anycastSection(status) {
  if (!status.anycast || !status.anycast.length) return [];
  const rows = status.anycast.map((a) =>
    el(
      "tr",
      { "data-announcement": a.name },
      el("td", {}, a.name, el("span", { class: "note" }, a.vips.join(", "))),
      el("td", {}, badge(a.announced ? "announced" : "withdrawn", a.announced ? "ok" : "warn"), el("span", { class: "why" }, a.why + ", for " + duration(a.seconds_in_state)), a.error ? el("span", { class: "error" }, a.error) : null),
      el("td", { class: "num" }, String(a.withdrawals))
    )
  );
  return [el("h3", {}, "Announcements"), el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "announcement"), el("th", {}, "state"), el("th", { class: "num" }, "withdrawals"))), el("tbody", {}, rows))];
}

function swapText(node, status) {
  const masters = status.vrrp.filter((v) => v.running && v.state === "MASTER");
  const peer = peerName(node.name);
  const parts = masters.map((v) => (v.mode === "cloud" ? "the master role of " + v.name + " (its /healthz turns secondary, " + peer + "'s primary)" : "the VIP " + v.vips.map((x) => x.split("/")[0]).join(", ") + " of " + v.name));
  return node.name + " will hand " + parts.join(" and ") + " to " + peer + ".";
}

function nodePanel(node, status, now) {
  const isMaster = status.vrrp.some((v) => v.running && v.state === "MASTER");
  const actions = el(
    "span",
    { class: "actions" },
    isMaster ? actionButton("Swap", "swap", () => act(node, "Swap " + node.name, swapText(node, status), "/swap")) : null,
    actionButton("Reload", "reload", () => act(node, "Reload " + node.name, node.name + " will read its config file again; a file with errors is refused and the running config stays.", "/reload"))
  );
  return el(
    "section",
    { class: "node", "data-node": status.node, "data-reachable": "true" },
    el("h2", {}, status.node, badge(status.healthz, verdictKind(status.healthz)), el("span", { class: "where" }, node.where), actions),
    el("div", { class: "note" }, "reloads: " + status.reloads.ok + " ok, " + status.reloads.failed + " failed · " + status.threads + " data thread(s), " + status.io),
    vrrpSection(node, status),
    servicesSection(node, status, now),
    poolsSection(node, status),
    appsSection(status),
    anycastSection(status)
  );
}

function unreachablePanel(peer, now) {
  const since = peer.unreachable_since_unix_ms;
  const text = since ? "UNREACHABLE since " + clock(since) + " (" + duration((now - since) / 1000) + ")" : "UNREACHABLE";
  return el(
    "section",
    { class: "node unreachable", "data-node": peer.admin, "data-reachable": "false" },
    el("h2", {}, state.names.get(peer.admin) || "peer", badge("unreachable", "bad"), el("span", { class: "where" }, "peer · " + peer.admin)),
    el("p", { class: "down-notice" }, text),
    el("p", { class: "note" }, "last error: " + (peer.error || "none yet") + ". Nothing is shown for it until it answers again.")
  );
}

function render() {
  const now = Date.now();
  const panels = [];
  if (state.self) {
    document.getElementById("title-node").textContent = state.self.node;
    panels.push(nodePanel({ name: state.self.node, prefix: "", where: "this node · " + location.host }, state.self, now));
  }
  for (const peer of state.peers) {
    if (peer.reachable && peer.status) {
      state.names.set(peer.admin, peer.status.node);
      panels.push(nodePanel({ name: peer.status.node, prefix: "/peers/" + encodeURIComponent(peer.admin), where: "peer · " + peer.admin }, peer.status, now));
    } else {
      panels.push(unreachablePanel(peer, now));
    }
  }
  document.getElementById("nodes").replaceChildren(...panels);
  showMode();
}

// --- data ----------------------------------------------------------------------------------

async function getJson(path) {
  const response = await fetch(path, { cache: "no-store", credentials: "omit" });
  if (!response.ok) throw new Error(path + ": " + response.status);
  return response.json();
}

async function refresh() {
  if (state.refreshing) {
    state.again = true;
    return;
  }
  state.refreshing = true;
  try {
    const [self, peers] = await Promise.all([getJson("/status"), getJson("/peers").catch(() => state.peers)]);
    const now = Date.now();
    state.self = self;
    state.peers = peers;
    sample(self.node, self.services, now);
    for (const p of peers) if (p.status) sample(p.status.node, p.status.services, now);
    render();
  } catch (e) {
    showResult("this node does not answer: " + e.message, false);
  } finally {
    state.refreshing = false;
    if (state.again) {
      state.again = false;
      refreshSoon();
    }
  }
}

let soon = null;
function refreshSoon() {
  if (soon !== null) return;
  soon = setTimeout(() => {
    soon = null;
    refresh();
  }, 50);
}

function describe(e) {
  switch (e.kind) {
    case "role":
      return e.instance + ": " + e.from + " → " + e.to + (e.why ? " (" + e.why + ")" : "");
    case "health":
      return e.pool + " " + e.backend + " is " + (e.up ? "up" : "down") + (e.reason ? ": " + e.reason : "");
    case "drain":
      return e.pool + " " + e.backend + (e.drained ? " drained" : " enabled") + " by an operator";
    case "swap":
      return "swap: " + e.result;
    case "reload":
      return (e.ok ? "reloaded: " : "reload refused: ") + e.detail;
    case "app":
      return "application " + e.name + ": " + e.from + " → " + e.to + (e.error ? " (" + e.error + ")" : "");
    case "announcement":
      return e.name + (e.announced ? " announced" : " withdrawn") + ": " + e.why;
    default:
      return e.kind;
  }
}

function eventKind(e) {
  if (e.kind === "health") return e.up ? "ok" : "bad";
  if (e.kind === "role") return roleKind(e.to);
  if (e.kind === "reload") return e.ok ? "ok" : "bad";
  return "warn";
}

function listen() {
  const live = document.getElementById("live");
  const list = document.getElementById("events");
  const source = new EventSource("/events");
  source.onopen = () => {
    live.textContent = "live";
    live.className = "badge ok";
  };
  source.onerror = () => {
    live.textContent = "reconnecting";
    live.className = "badge bad";
  };
  // A reconnect resumes after the last id received (the browser sends Last-Event-ID).
  const onEvent = (message) => {
    let e;
    try {
      e = JSON.parse(message.data);
    } catch {
      return;
    }
    const item = el("li", { "data-event": e.kind, "data-id": String(e.id) }, el("time", {}, clock(e.unix_ms)), badge(e.kind, eventKind(e)), " ", e.node + ": " + describe(e));
    list.prepend(item);
    while (list.children.length > MAX_EVENTS) list.lastChild.remove();
    refreshSoon();
  };
  for (const kind of ["role", "health", "drain", "swap", "reload", "app", "announcement"]) {
    source.addEventListener(kind, onEvent);
  }
}

// --- start ---------------------------------------------------------------------------------

function start() {
  document.getElementById("unlock").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = document.getElementById("token");
    const value = input.value.trim();
    input.value = "";
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    render();
  });
  document.getElementById("lock-button").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    render();
  });
  showMode();
  refresh();
  setInterval(refresh, POLL_MS);
  listen();
}

start();
