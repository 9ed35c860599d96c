// The console's page: sign in, chat over HAIP, sessions, operator view.
// It talks only to the edge that served it.
import { HaipConnection } from "/console/haip.js";
import { drawRates } from "/console/chart.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "haip-console-token"; // sessionStorage only, never localStorage

const state = {
  token: "",
  claims: {},
  sessions: [],
  session: "",
  conn: null,
  runs: new Set(), // runs started and not finished
  items: new Map(), // message_id / call_id -> rendered element
  opTimer: null,
};

// ---- helpers ----

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else if (k === "aria-label" || k === "type" || k === "title") e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

function decodeClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
  } catch {
    return {};
  }
}

class APIError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// api calls the edge with the token in the Authorization header.
async function api(path, { method = "GET", body } = {}) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store", credentials: "omit" });
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) throw new APIError(res.status, data);
  return data;
}

async function ticket() {
  const t = await api("/api/v1/tickets", { method: "POST", body: {} });
  return t.ticket;
}

function fmtTime(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  return d.toLocaleString();
}

function logLine(text) {
  const li = el("li", { text: `${new Date().toLocaleTimeString()} ${text}` });
  $("conn-log").append(li);
  li.scrollIntoView({ block: "nearest" });
}

// ---- sign in ----

async function offerDevToken() {
  try {
    const res = await fetch("/console/dev-token", { cache: "no-store", credentials: "omit" });
    if (res.status !== 200) return;
    const { token } = await res.json();
    const b = $("dev-token");
    b.hidden = false;
    b.onclick = () => {
      $("token").value = token;
      signIn(token, $("remember").checked);
    };
  } catch {
    /* no dev token */
  }
}

async function signIn(token, remember) {
  token = token.trim();
  $("signin-error").textContent = "";
  state.token = token;
  try {
    await api("/api/v1/sessions?limit=1");
  } catch (e) {
    state.token = "";
    $("signin-error").textContent = `Sign-in refused: ${e.message}`;
    return;
  }
  if (remember) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  state.claims = decodeClaims(token);
  $("token").value = "";
  $("who-name").textContent = `${state.claims.sub || state.claims.userId || "?"} (${state.claims.role || "user"})`;
  $("who").hidden = false;
  $("tabs").hidden = false;
  $("tab-operator").hidden = state.claims.role !== "admin";
  show("chat");
  await loadSessions();
  if (state.sessions.length > 0) await openSession(state.sessions[0].id);
  else await newSession();
}

function signOut() {
  if (state.conn) state.conn.close();
  state.conn = null;
  state.token = "";
  state.claims = {};
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(state.opTimer);
  $("who").hidden = true;
  $("tabs").hidden = true;
  show("signin");
}

// ---- views ----

function show(view) {
  for (const v of ["signin", "chat", "sessions", "operator"]) $(`view-${v}`).hidden = v !== view;
  for (const t of document.querySelectorAll(".tab")) t.setAttribute("aria-pressed", String(t.dataset.view === view));
  clearInterval(state.opTimer);
  if (view === "operator") {
    refreshOperator();
    state.opTimer = setInterval(refreshOperator, 2000);
  }
  if (view === "sessions") loadSessions();
}

// ---- sessions ----

async function loadSessions() {
  const data = await api("/api/v1/sessions?limit=100");
  state.sessions = data.sessions || [];
  const pick = $("session-pick");
  pick.replaceChildren(...state.sessions.map((s) => el("option", { value: s.id, text: s.name || s.id.slice(0, 8) })));
  if (state.session) pick.value = state.session;
  const list = $("session-list");
  list.replaceChildren(...state.sessions.map(sessionRow));
  if (state.sessions.length === 0) list.append(el("li", { class: "muted", text: "No sessions yet." }));
}

function sessionRow(s) {
  const name = el("input", { value: s.name || "", "aria-label": `Name of session ${s.id}` });
  const li = el("li", { class: "session", "data-id": s.id },
    el("div", { class: "sname" }, name,
      el("span", { class: "tags", text: (s.tags || []).map((t) => `#${t}`).join(" ") })),
    el("div", { class: "meta", text: `last activity ${fmtTime(s.updatedAt)} · ${s.id}` }),
    el("div", { class: "row" },
      el("button", { type: "button", text: "Open", "aria-label": `Open session ${s.name || s.id}`, onclick: () => { show("chat"); openSession(s.id); } }),
      el("button", { type: "button", text: "Rename", "aria-label": `Rename session ${s.name || s.id}`, onclick: () => rename(s.id, name.value) }),
      el("button", { type: "button", class: "danger delete", text: "Delete", "aria-label": `Delete session ${s.name || s.id}`, onclick: (e) => remove(s, e.currentTarget) })));
  name.addEventListener("keydown", (e) => {
    if (e.key === "Enter") rename(s.id, name.value);
  });
  return li;
}

async function rename(id, name) {
  await api("/api/v1/sessions/update", { method: "POST", body: { sessionId: id, name } });
  await loadSessions();
}

// remove deletes a session on the second click (the first arms the
// button: no modal dialog).
async function remove(s, button) {
  if (button.dataset.armed !== "1") {
    button.dataset.armed = "1";
    button.textContent = "Really delete?";
    button.setAttribute("aria-label", `Really delete session ${s.name || s.id}? Its whole log goes.`);
    return;
  }
  await api("/api/v1/sessions/delete", { method: "POST", body: { sessionId: s.id } });
  if (state.session === s.id) {
    if (state.conn) state.conn.close();
    state.conn = null;
    state.session = "";
    $("messages").replaceChildren();
    setConnected(false, "session deleted");
  }
  await loadSessions();
}

async function newSession() {
  const name = `chat ${new Date().toLocaleString()}`;
  const data = await api("/api/v1/sessions/create", { method: "POST", body: { name, tags: ["console"] } });
  await loadSessions();
  await openSession(data.sessionId);
}

// ---- chat ----

async function openSession(id) {
  if (state.conn) state.conn.close();
  state.conn = null;
  state.session = id;
  state.runs.clear();
  state.items.clear();
  $("session-pick").value = id;
  $("messages").replaceChildren();
  $("wire").replaceChildren();
  $("conn-log").replaceChildren();
  setConnected(false, "loading");
  const details = await api(`/api/v1/sessions/details?sessionId=${encodeURIComponent(id)}`);
  const last = (details.session && details.session.lastSeq) || 0;
  const page = await api(`/api/v1/sessions/${encodeURIComponent(id)}/messages?direction=backward&limit=200`);
  const conn = new HaipConnection({
    base: location.origin,
    session: id,
    ticket,
    lastRxSeq: last,
    onEnvelope: (env, info) => render(env, info),
    onState: (s, detail) => setConnected(s === "open", s === "open" ? `connected (after seq ${detail})` : `${s}${detail ? ": " + detail : ""}`),
    onLog: logLine,
  });
  for (const m of page.messages || []) {
    let env = m.envelope;
    if (typeof env === "string") env = JSON.parse(env);
    if (env.id) conn.seenIds.add(env.id);
    render(env, { history: true, direction: m.direction });
  }
  if (page.hasBefore) $("messages").prepend(el("li", { class: "sys", text: "(older messages not shown)" }));
  logLine(`history loaded: ${(page.messages || []).length} envelopes, last seq ${last}`);
  state.conn = conn;
  conn.connect();
}

function setConnected(open, text) {
  $("conn-status").textContent = text;
  $("conn-status").dataset.state = open ? "open" : "closed";
  $("send").disabled = !open;
  $("text").disabled = !state.session;
  $("cut").disabled = !open;
  $("cancel-run").disabled = !open || state.runs.size === 0;
}

function seqBadge(env) {
  return el("span", { class: "seq", text: `#${env.seq}`, title: `seq ${env.seq}` });
}

function append(li) {
  const list = $("messages");
  const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(li);
  if (atEnd) list.scrollTop = list.scrollHeight;
}

function render(env, info) {
  const p = env.payload || {};
  if (!info.control && !info.echo && !(info.history && info.direction === "in")) {
    $("wire").append(el("li", { "data-seq": env.seq, "data-type": env.type, "data-source": info.history ? "history" : "live", text: `seq ${env.seq} ${env.type} ${env.channel}` }));
  }
  switch (env.type) {
    case "TEXT_MESSAGE_START": {
      const user = env.channel === "USER";
      const body = el("span", { class: "text", text: p.text || "" });
      const li = el("li", { class: `msg ${user ? "user" : "agent"}`, "data-message": p.message_id, "data-seq": env.seq },
        el("span", { class: "author", text: p.author || (user ? "you" : "agent") }), seqBadge(env), body);
      state.items.set(p.message_id, li);
      append(li);
      break;
    }
    case "TEXT_MESSAGE_PART": {
      const li = state.items.get(p.message_id);
      if (!li) break;
      li.querySelector(".text").append(p.text || "");
      li.querySelector(".seq").textContent = `#${li.dataset.seq}–${env.seq}`;
      break;
    }
    case "TEXT_MESSAGE_END": {
      const li = state.items.get(p.message_id);
      if (li) li.classList.add("done");
      break;
    }
    case "RUN_STARTED":
      state.runs.add(env.run_id);
      append(el("li", { class: "sys", "data-run": env.run_id || "" }, seqBadge(env), `run started`));
      break;
    case "RUN_FINISHED":
      state.runs.delete(env.run_id);
      append(el("li", { class: "sys" }, seqBadge(env), `run finished: ${p.status || "OK"}${p.summary ? " — " + p.summary : ""}`));
      break;
    case "RUN_ERROR":
      append(el("li", { class: "sys err" }, seqBadge(env), `run error ${p.code}: ${p.message}`));
      break;
    case "RUN_CANCEL":
      append(el("li", { class: "sys" }, seqBadge(env), `cancel asked for run ${String(p.run_id).slice(0, 8)}`));
      break;
    case "TOOL_CALL":
      renderCall(env, p);
      break;
    case "TOOL_UPDATE": {
      const li = state.items.get(p.call_id);
      if (!li) break;
      const pr = li.querySelector("progress");
      if (pr && typeof p.progress === "number") pr.value = p.progress;
      li.querySelector(".tstatus").textContent = p.status;
      break;
    }
    case "TOOL_DONE":
      renderDone(env, p);
      break;
    case "ERROR":
      append(el("li", { class: "sys err" }, `error ${p.code}: ${p.message}`));
      break;
    default:
      break;
  }
  if (state.conn) $("cancel-run").disabled = !state.conn.open || state.runs.size === 0;
}

function renderCall(env, p) {
  if (state.items.has(p.call_id)) return;
  if (p.tool === "user_approval") {
    const prm = p.params || {};
    const comment = el("input", { "aria-label": "Comment for the decision", placeholder: "comment (optional)" });
    const approve = el("button", { type: "button", class: "approve", text: "Approve", "aria-label": `Approve: ${prm.what || "request"}` });
    const reject = el("button", { type: "button", class: "danger reject", text: "Reject", "aria-label": `Reject: ${prm.what || "request"}` });
    const li = el("li", { class: "approval", "data-call": p.call_id, "data-seq": env.seq },
      el("span", { class: "author", text: "approval requested" }), seqBadge(env),
      el("div", { class: "what", text: prm.what || "" }),
      prm.why ? el("div", { class: "why", text: prm.why }) : null,
      prm.tool ? el("code", { text: `${prm.tool} ${JSON.stringify(prm.tool_params || {})}` }) : null,
      el("div", { class: "row" }, comment, approve, reject),
      el("div", { class: "tstatus", text: "waiting for you" }));
    const decide = async (decision) => {
      approve.disabled = reject.disabled = true;
      try {
        await api(`/gizmo/${encodeURIComponent(state.session)}/approvals/${encodeURIComponent(p.call_id)}`, { method: "POST", body: { decision, comment: comment.value } });
        if (!li.dataset.decision) li.querySelector(".tstatus").textContent = `decision sent: ${decision}`;
      } catch (e) {
        li.querySelector(".tstatus").textContent = `not decided: ${e.message}`;
        approve.disabled = reject.disabled = e.status === 409;
      }
    };
    approve.onclick = () => decide("approve");
    reject.onclick = () => decide("reject");
    state.items.set(p.call_id, li);
    append(li);
    return;
  }
  const li = el("li", { class: "tool", "data-call": p.call_id, "data-seq": env.seq },
    el("span", { class: "author", text: `tool ${p.tool}` }), seqBadge(env),
    el("code", { text: JSON.stringify(p.params || {}) }),
    el("progress", { max: 100, value: 0, "aria-label": `progress of ${p.tool}` }),
    el("span", { class: "tstatus", text: "called" }),
    el("div", { class: "result" }));
  state.items.set(p.call_id, li);
  append(li);
}

function renderDone(env, p) {
  const li = state.items.get(p.call_id);
  if (!li) return;
  if (li.classList.contains("approval")) {
    const r = p.result || {};
    for (const b of li.querySelectorAll("button")) b.disabled = true;
    if (env.channel === "USER") {
      // A decision sent (from this page or another device): the agent's
      // TOOL_DONE that follows is the outcome.
      if (!li.dataset.decision) li.querySelector(".tstatus").textContent = `decision sent: ${r.decision || "?"}`;
      return;
    }
    const d = r.decision || p.status;
    li.querySelector(".tstatus").textContent = `decision: ${d}${r.decided_by ? " by " + r.decided_by : ""}${r.comment ? " — " + r.comment : ""}`;
    li.dataset.decision = d;
    for (const b of li.querySelectorAll("button")) b.disabled = true;
    return;
  }
  const pr = li.querySelector("progress");
  if (pr) pr.value = 100;
  li.querySelector(".tstatus").textContent = p.status || "OK";
  li.querySelector(".result").textContent = JSON.stringify(p.result);
  li.classList.add("done");
}

function send() {
  const text = $("text").value.trim();
  if (!text || !state.conn) return;
  const sent = state.conn.sendText(text);
  if (!sent) {
    logLine("not connected: message not sent");
    return;
  }
  const li = el("li", { class: "msg user", "data-message": sent.messageId },
    el("span", { class: "author", text: "you" }), el("span", { class: "seq", text: "sent" }), el("span", { class: "text", text }));
  state.items.set(sent.messageId, li);
  append(li);
  $("text").value = "";
}

// ---- operator ----

async function refreshOperator() {
  let ov;
  try {
    ov = await api("/api/v1/operator/overview");
  } catch (e) {
    $("op-status").textContent = `cannot read the overview: ${e.message}`;
    return;
  }
  $("op-status").textContent = `updated ${new Date(ov.at).toLocaleTimeString()}`;
  const conns = ov.edges.reduce((n, e) => n + e.activeConnections, 0);
  const fig = (label, value) => el("div", { class: "figure" }, el("span", { class: "v", text: String(value) }), el("span", { class: "l", text: label }));
  $("op-figures").replaceChildren(
    fig("edges", ov.edges.length), fig("connections", conns), fig("runs active", ov.runsActive),
    fig("tool calls", ov.toolCallsActive), fig("work-queue depth", ov.queueDepth), fig("live tools", ov.tools.length));
  $("op-edges").replaceChildren(...ov.edges.map((e) => el("div", { class: "edge", "data-edge": e.id },
    el("strong", { text: `edge ${e.id}` }),
    el("span", { class: "muted", text: ` up since ${fmtTime(e.startedAt)}${e.draining ? " (draining)" : ""}` }),
    el("div", { text: `${e.activeConnections} connections ${Object.entries(e.byTransport || {}).map(([k, v]) => `${k}: ${v}`).join(", ")} · in ${e.messagesInPerSecond.toFixed(1)}/s · out ${e.messagesOutPerSecond.toFixed(1)}/s` }),
    el("ul", { class: "conns" }, ...(e.connections || []).map((c) => el("li", { text: `${c.transport} · ${c.user}` }))))));
  $("op-tools").replaceChildren(...(ov.tools || []).map((t) => el("li", { "data-tool": t.name, text: `${t.name} — ${(t.workers || []).join(", ") || "?"}` })));
  const discs = ov.edges.flatMap((e) => (e.disconnects || []).map((d) => ({ ...d, edge: e.id }))).sort((a, b) => b.at - a.at).slice(0, 30);
  $("op-disconnects").replaceChildren(...discs.map((d) => el("li", { text: `${new Date(d.at).toLocaleTimeString()} edge ${d.edge} ${d.transport} ${d.label} ${d.code}${d.reason ? " " + d.reason : ""}${d.user ? " (" + d.user + ")" : ""}` })));
  state.lastEdges = ov.edges;
  drawRates($("op-chart"), ov.edges);
}

// ---- wiring ----

function init() {
  $("signin").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn($("token").value, $("remember").checked);
  });
  $("sign-out").onclick = signOut;
  for (const t of document.querySelectorAll(".tab")) t.onclick = () => show(t.dataset.view);
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  $("text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  $("show-seq").addEventListener("change", (e) => document.body.classList.toggle("show-seq", e.target.checked));
  $("cut").onclick = () => state.conn && state.conn.cut();
  $("cancel-run").onclick = () => {
    if (!state.conn) return;
    for (const run of state.runs) state.conn.cancelRun(run);
  };
  $("new-session").onclick = () => newSession();
  $("session-pick").addEventListener("change", (e) => openSession(e.target.value));
  $("refresh-sessions").onclick = () => loadSessions();
  window.addEventListener("resize", () => {
    if (state.lastEdges && !$("view-operator").hidden) drawRates($("op-chart"), state.lastEdges);
  });
  offerDevToken();
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved, true);
}

init();
