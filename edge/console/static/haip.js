// HAIP 1.1.2 over WebSocket, for the console. Everything the page knows
// about the wire is in this module, so that it can be replaced by another
// client with the same small surface: new HaipConnection(opts), connect(),
// send(), cut(), close(), and the callbacks in opts.

export const HAIP_VERSION = "1.1.2";

// The 22 event types; the console accepts all of them.
export const EVENT_TYPES = [
  "HAI", "RUN_STARTED", "RUN_FINISHED", "RUN_CANCEL", "RUN_ERROR", "PING", "PONG",
  "REPLAY_REQUEST", "TEXT_MESSAGE_START", "TEXT_MESSAGE_PART", "TEXT_MESSAGE_END",
  "AUDIO_CHUNK", "TOOL_CALL", "TOOL_UPDATE", "TOOL_DONE", "TOOL_CANCEL", "TOOL_LIST",
  "TOOL_SCHEMA", "ERROR", "FLOW_UPDATE", "PAUSE_CHANNEL", "RESUME_CHANNEL",
];

// Types the edge sends outside the session log: they repeat the last seq
// instead of taking one of their own.
const CONTROL = new Set(["HAI", "PING", "PONG", "ERROR", "FLOW_UPDATE", "PAUSE_CHANNEL",
  "RESUME_CHANNEL", "REPLAY_REQUEST", "TOOL_LIST", "TOOL_SCHEMA"]);

// Message credit per channel granted to the edge; topped up with
// FLOW_UPDATE once half of it is used.
const CREDIT = 200;

// Close codes after which reconnecting is pointless.
const FINAL_CLOSES = new Set([4003 /* session deleted */, 1008 /* policy */]);

// A gap not filled by the edge within this time is asked for with
// REPLAY_REQUEST (HAIP §9).
const GAP_WAIT_MS = 500;

export function uuid() {
  return crypto.randomUUID();
}

// isControl reports the envelopes that do not advance the log position.
export function isControl(type) {
  return CONTROL.has(type);
}

// HaipConnection is one session's HAIP WebSocket, reconnecting by itself
// with last_rx_seq after a drop.
//
// opts: {
//   base: "http://host:port" (the edge; the page's own origin),
//   session: uuid,
//   ticket: async () => string   (a fresh single-use ticket per socket),
//   lastRxSeq: number            (resume point; 0 = from the start),
//   onEnvelope(env, info)        info: {fresh, echo, control, replayed}
//   onState(state, detail)       "connecting" | "open" | "closed" | "final"
//   onLog(text)                  connection events, for the user to read
// }
export class HaipConnection {
  constructor(opts) {
    this.opts = opts;
    this.session = opts.session;
    this.lastRx = opts.lastRxSeq || 0; // highest contiguous log seq received
    this.outSeq = 0;
    this.seenIds = new Set();
    this.consumed = new Map(); // channel -> messages since the last FLOW_UPDATE
    this.ws = null;
    this.closing = false;
    this.retry = 0;
    this.gapTimer = null;
    this.timer = null;
  }

  log(text) {
    if (this.opts.onLog) this.opts.onLog(text);
  }

  state(s, detail) {
    if (this.opts.onState) this.opts.onState(s, detail);
  }

  // connect opens the socket (with a fresh ticket) and says HAI.
  async connect() {
    this.closing = false;
    this.state("connecting");
    let ticket;
    try {
      ticket = await this.opts.ticket();
    } catch (e) {
      this.log(`cannot get a ticket: ${e.message}`);
      this.scheduleReconnect();
      return;
    }
    const u = new URL("/haip/websocket", this.opts.base);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    u.searchParams.set("ticket", ticket);
    u.searchParams.set("session", this.session);
    u.searchParams.set("conversation", "both");
    const ws = new WebSocket(u.toString());
    this.ws = ws;
    const resumeFrom = this.lastRx;
    ws.onopen = () => {
      this.retry = 0;
      const hello = {
        haip_version: HAIP_VERSION,
        accept_major: [1],
        accept_events: EVENT_TYPES,
        capabilities: { flow_control: { initial_credit_messages: CREDIT }, conversation: "both" },
        last_rx_seq: String(resumeFrom),
      };
      this.consumed.clear();
      this.sendEnvelope("SYSTEM", "HAI", hello);
      this.log(resumeFrom > 0 ? `connected; resuming from seq ${resumeFrom}` : "connected from the start of the session");
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== "string") return; // binary frames: not used by the console
      let env;
      try {
        env = JSON.parse(ev.data);
      } catch {
        this.log("the edge sent a frame that is not JSON; ignored");
        return;
      }
      this.receive(env);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearTimeout(this.gapTimer);
      const why = `${ev.code}${ev.reason ? " " + ev.reason : ""}`;
      if (this.closing) {
        this.state("closed", why);
        return;
      }
      if (FINAL_CLOSES.has(ev.code)) {
        this.log(`connection ended: ${why}`);
        this.state("final", why);
        return;
      }
      this.log(`connection lost (${why}); last seq ${this.lastRx}`);
      this.state("closed", why);
      this.scheduleReconnect();
    };
  }

  scheduleReconnect() {
    if (this.closing) return;
    const delay = Math.min(5000, 250 * 2 ** this.retry);
    this.retry++;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  receive(env) {
    const type = env.type;
    const seq = Number(env.seq);
    if (type === "HAI") {
      // The edge's HAI carries the position delivery continues after.
      const from = seq;
      if (from !== this.lastRx) this.log(`the edge resumes after seq ${from} (asked ${this.lastRx})`);
      this.lastRx = from;
      this.log(`resumed from seq ${from}`);
      this.state("open", String(from));
      return;
    }
    if (type === "PING") {
      this.sendEnvelope("SYSTEM", "PONG", { nonce: (env.payload && env.payload.nonce) || "" });
      return;
    }
    if (type === "ERROR") {
      const p = env.payload || {};
      this.log(`ERROR ${p.code}: ${p.message}`);
    }
    const duplicate = env.id && this.seenIds.has(env.id);
    if (env.id) this.seenIds.add(env.id);
    if (isControl(type)) {
      if (!duplicate && this.opts.onEnvelope) this.opts.onEnvelope(env, { control: true });
      return;
    }
    // A log message takes the next seq; an echo of the user side repeats
    // the last one (and is recognised by its id).
    const echo = seq <= this.lastRx;
    if (!echo) {
      if (seq > this.lastRx + 1) this.gap(this.lastRx + 1, seq - 1);
      else this.lastRx = seq;
      this.credit(env.channel);
    }
    if (duplicate) return;
    if (this.opts.onEnvelope) this.opts.onEnvelope(env, { fresh: !echo, echo });
  }

  // gap asks for what is missing when the edge has not sent it soon.
  gap(from, to) {
    this.log(`gap: seqs ${from}-${to} missing`);
    this.lastRx = to + 1;
    clearTimeout(this.gapTimer);
    this.gapTimer = setTimeout(() => {
      this.sendEnvelope("SYSTEM", "REPLAY_REQUEST", { from_seq: String(from), to_seq: String(to) });
    }, GAP_WAIT_MS);
  }

  credit(channel) {
    const n = (this.consumed.get(channel) || 0) + 1;
    if (n < CREDIT / 2) {
      this.consumed.set(channel, n);
      return;
    }
    this.consumed.set(channel, 0);
    this.sendEnvelope("SYSTEM", "FLOW_UPDATE", { channel, add_messages: n });
  }

  // sendEnvelope writes one envelope; it returns it, or null when the
  // socket is not open.
  sendEnvelope(channel, type, payload, extra = {}) {
    const env = {
      id: uuid(),
      session: this.session,
      seq: String(++this.outSeq),
      ts: String(Date.now()),
      channel,
      type,
      payload,
      pv: 1,
      ...extra,
    };
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return null;
    this.ws.send(JSON.stringify(env));
    return env;
  }

  get open() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  // sendText sends one complete user text message; it returns the
  // envelopes sent (their ids mark the echoes to drop).
  sendText(text) {
    const messageId = uuid();
    const a = this.sendEnvelope("USER", "TEXT_MESSAGE_START", { message_id: messageId, text, author: "user" });
    const b = this.sendEnvelope("USER", "TEXT_MESSAGE_END", { message_id: messageId });
    for (const e of [a, b]) if (e) this.seenIds.add(e.id);
    return a && b ? { messageId, ids: [a.id, b.id] } : null;
  }

  // cancelRun asks the edge to stop a run.
  cancelRun(runId) {
    return this.sendEnvelope("USER", "RUN_CANCEL", { run_id: runId }, { run_id: runId });
  }

  // decide answers an approval request (a TOOL_CALL of user_approval)
  // with the user's TOOL_DONE.
  decide(callId, decision, comment) {
    return this.sendEnvelope("AGENT", "TOOL_DONE", { call_id: callId, status: "OK", result: { decision, comment } });
  }

  // cut drops the socket abruptly, as a network failure would; the
  // connection comes back by itself with last_rx_seq.
  cut() {
    if (!this.ws) return false;
    this.log(`cut the connection at seq ${this.lastRx}`);
    this.ws.close(3000, "cut by the user");
    return true;
  }

  close() {
    this.closing = true;
    clearTimeout(this.timer);
    clearTimeout(this.gapTimer);
    if (this.ws) this.ws.close(1000, "bye");
  }
}
