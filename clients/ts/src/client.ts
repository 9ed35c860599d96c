// The client core: one logical connection to a session that survives
// drops, edges and token expiry.
//
// Position. The edge numbers the session log densely (1, 2, 3, …) and
// stamps its connection-scoped control messages (HAI, PING, PONG, ERROR,
// FLOW_UPDATE, PAUSE_CHANNEL, RESUME_CHANNEL, REPLAY_REQUEST, and the
// answers to a user's TOOL_LIST/TOOL_SCHEMA) with the seq of the last log
// message delivered. So the client applies the spec's "drop a frame whose
// seq is not above the last" rule to log messages only: a control message
// is recognised by its type, always handled, and never moves the
// position. A log message at or below the position is a duplicate
// (dropped); one past position+1 is a gap (held, and asked for with
// REPLAY_REQUEST if the gap does not fill within gapWaitMs).

import { type PositionStore, MemoryStore } from "./store.js";
import {
  type Channel,
  CHANNELS,
  type Envelope,
  type EnvelopeOf,
  type EventType,
  EVENT_TYPES,
  type PayloadMap,
  type ErrorPayload,
  type ToolDonePayload,
  type ToolUpdatePayload,
  isControl,
  parseEnvelope,
} from "./types.js";
import { CloseCode, type CloseInfo, HTTPError, TRANSPORTS, type Transport, type TransportName, type WebSocketCtor, open } from "./transports.js";
import { nameUUID, newUUID } from "./uuid.js";

/** A token, or a function the client calls for a fresh one on every (re)connect. */
export type TokenSource = string | (() => string | Promise<string>);

/** Options of a HaipClient. Only urls and token are required. */
export interface ClientOptions {
  /** Base URL(s) of edges (http, https, ws or wss). A reconnect moves to the next one. */
  urls: string | string[];
  /** The JWT, or a function returning a fresh one (called on every reconnect and before expiry). */
  token: TokenSource;
  /** The session (a uuid). Default: a new one. */
  session?: string;
  /** Transports to try, in order; the first that works is kept. Default websocket, sse, stream. */
  transports?: TransportName[];
  /** Where the position is kept. Default: in memory. */
  store?: PositionStore;
  /** WebSocket constructor when there is no global one (Node 20 without --experimental-websocket: the ws package). */
  WebSocket?: WebSocketCtor;
  /** fetch to use. Default: the global one. */
  fetch?: typeof fetch;
  /** Messages per channel the edge may send ahead of what the app consumed. Default 256. */
  credit?: number;
  /** Unread text chunks (over all iterated runs) above which the client stops granting credit. Default 1024. */
  highWaterMark?: number;
  /** Reconnect backoff: the delay before attempt n is random in [0, min(maxMs, initialMs·2^n)]. Defaults 250 ms, 10 s. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** How long a connection may take to open and handshake before the next transport is tried. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** Reconnect with a fresh token shortly before the current one expires (JWT exp). Default true. */
  refreshBeforeExpiry?: boolean;
  /** How long a gap in the log may stay open before REPLAY_REQUEST. Default 500 ms. */
  gapWaitMs?: number;
}

/** Connection status, as onStatus reports it. */
export type Status = "connecting" | "open" | "reconnecting" | "closed";

/** How a run ended. */
export interface RunResult {
  runId: string;
  status: "OK" | "CANCELLED" | "ERROR";
  summary?: string;
  /** The agent's answer, all text messages of the run joined. */
  text: string;
  /** The run's RUN_ERROR, if it had one. */
  error?: ErrorPayload;
}

/** A run started by sendText: iterate it for the answer's text as it streams. */
export interface RunHandle extends AsyncIterable<string> {
  readonly messageId: string;
  readonly runId: string;
  /** Resolves when the run ends (RUN_FINISHED); rejects if the edge refuses the message. */
  readonly done: Promise<RunResult>;
  /** cancel asks the agent to stop (RUN_CANCEL); done then resolves with CANCELLED. */
  cancel(): Promise<void>;
}

/** A tool call started by callTool. */
export interface ToolCall {
  readonly callId: string;
  /** Resolves with the call's TOOL_DONE payload; rejects if the edge refuses the call. */
  readonly done: Promise<ToolDonePayload>;
  /** cancel asks the tool to stop (TOOL_CANCEL); done then resolves with status CANCELLED. */
  cancel(reason?: string): Promise<void>;
}

/** An audio chunk the agent sent (AUDIO_CHUNK on AUDIO_OUT). */
export interface AudioChunk {
  messageId: string;
  mime: string;
  data: Uint8Array;
  envelope: EnvelopeOf<"AUDIO_CHUNK">;
}

/** HaipError is an ERROR the edge sent about something the client did. */
export class HaipError extends Error {
  readonly code: string;
  readonly detail?: Record<string, unknown>;
  constructor(p: ErrorPayload) {
    super(`${p.code}: ${p.message}`);
    this.code = p.code;
    this.detail = p.detail;
  }
}

const VERSION = "1.1.2";
const DEFAULT_CREDIT = 256;
const DEFAULT_HIGH_WATER = 1024;
const MAX_GAP_HELD = 4096;
const MIN_REFRESH_MS = 1000;

interface Outgoing {
  env: Record<string, unknown> & { id: string; channel: Channel; type: EventType };
  sent: boolean; // written on the current connection
  conn?: number;
  seq?: number;
}

interface Conn {
  n: number;
  t?: Transport;
  abort: AbortController;
  seq: number; // our numbering on this connection
  handshaken: boolean;
  hai: () => void;
  ended: (info: CloseInfo) => void;
  credit: Map<string, number>; // what the edge lets us send (websocket only)
  posting?: boolean; // a POST is in flight
  refreshing?: boolean; // closed by us for a fresh token
}

class RunState {
  text = "";
  chunks: string[] = [];
  iterated = false;
  wake?: () => void;
  relatedId?: string; // the envelope an ERROR about this run names
  finished = false;
  error?: ErrorPayload;
  failure?: Error;
  resolve!: (r: RunResult) => void;
  reject!: (e: Error) => void;
  readonly done: Promise<RunResult>;
  constructor(readonly runId: string) {
    this.done = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    this.done.catch(() => undefined); // the app may never look
  }
  push(text: string): void {
    this.text += text;
    this.chunks.push(text);
    this.wake?.();
  }
  end(): void {
    this.finished = true;
    this.wake?.();
  }
}

/**
 * HaipClient is one session's connection to the fabric. Create it, call
 * connect, then sendText, callTool, onEnvelope…; close ends it. It
 * reconnects by itself (any edge of the list, with backoff and jitter),
 * resumes exactly from its position, and grants the edge credit as the
 * app consumes.
 */
export class HaipClient {
  readonly session: string;
  private readonly o: Required<Omit<ClientOptions, "session" | "WebSocket" | "token" | "urls" | "backoff">> & {
    WebSocket?: WebSocketCtor;
    backoff: { initialMs: number; maxMs: number };
  };
  private readonly urls: string[];
  private readonly tokenSource: TokenSource;
  private token = "";
  private position = 0;
  private positionLoaded = false;
  private closed = false;
  private paused = new Set<Channel>();
  private conn?: Conn;
  private connCount = 0;
  private outbox: Outgoing[] = [];
  private consumed = new Map<string, number>();
  private held = new Map<number, Envelope>();
  private gapTimer?: ReturnType<typeof setTimeout>;
  private refreshTimer?: ReturnType<typeof setTimeout>;
  private runs = new Map<string, RunState>();
  private tools = new Map<string, { resolve: (p: ToolDonePayload) => void; reject: (e: Error) => void; onUpdate?: (u: ToolUpdatePayload) => void; relatedId?: string }>();
  private related = new Map<string, (e: HaipError) => void>();
  private listeners = new Set<(env: Envelope) => void>();
  private typed = new Map<EventType, Set<(env: Envelope) => void>>();
  private errorListeners = new Set<(e: Error) => void>();
  private statusListeners = new Set<(s: Status) => void>();
  private audioListeners = new Set<(a: AudioChunk) => void>();
  private loop?: Promise<void>;
  private opened?: { resolve: () => void; reject: (e: Error) => void; promise: Promise<void> };
  private wakeLoop?: () => void;
  private transportIndex = 0;
  private urlIndex = 0;

  constructor(options: ClientOptions) {
    this.urls = Array.isArray(options.urls) ? [...options.urls] : [options.urls];
    if (this.urls.length === 0) throw new Error("HaipClient: no edge URL");
    this.tokenSource = options.token;
    this.session = options.session ?? newUUID();
    const f = options.fetch ?? globalThis.fetch?.bind(globalThis);
    this.o = {
      transports: options.transports?.length ? [...options.transports] : [...TRANSPORTS],
      store: options.store ?? new MemoryStore(),
      WebSocket: options.WebSocket,
      fetch: f,
      credit: options.credit ?? DEFAULT_CREDIT,
      highWaterMark: options.highWaterMark ?? DEFAULT_HIGH_WATER,
      backoff: { initialMs: options.backoff?.initialMs ?? 250, maxMs: options.backoff?.maxMs ?? 10_000 },
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 10_000,
      refreshBeforeExpiry: options.refreshBeforeExpiry ?? true,
      gapWaitMs: options.gapWaitMs ?? 500,
    };
  }

  /** The last session-log seq received: where a resume continues. */
  get lastSeq(): number {
    return this.position;
  }

  /** The transport in use, if connected. */
  get transport(): TransportName | undefined {
    return this.conn?.handshaken ? this.conn.t?.name : undefined;
  }

  /** The edge in use (its base URL), if connected. */
  get url(): string | undefined {
    return this.conn?.handshaken ? this.urls[this.urlIndex % this.urls.length] : undefined;
  }

  /**
   * connect starts the connection and resolves at the first handshake. It
   * rejects if the edge refuses the session for good (403, 404) or the
   * client is closed first; otherwise it keeps trying.
   */
  connect(): Promise<void> {
    if (!this.opened) {
      let resolve!: () => void, reject!: (e: Error) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.opened = { resolve, reject, promise };
      this.loop = this.run();
    }
    return this.opened.promise;
  }

  /** close ends the connection for good: pending runs and calls reject. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.gapTimer);
    clearTimeout(this.refreshTimer);
    this.conn?.t?.close(CloseCode.Normal, "client closing");
    this.conn?.abort.abort();
    this.wakeLoop?.();
    const err = new Error("client closed");
    this.opened?.reject(err);
    for (const r of this.runs.values()) if (!r.finished) r.reject(err), r.end();
    for (const t of this.tools.values()) t.reject(err);
    this.tools.clear();
    await this.loop;
    this.status("closed");
  }

  /** onEnvelope calls fn with every session-log message and control message received. It returns an unsubscribe function. */
  onEnvelope(fn: (env: Envelope) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * on calls fn with every envelope of one type. This is also how new
   * message families (approvals, say) plug in: a feature module
   * registers for its types and sends with send().
   */
  on<T extends EventType>(type: T, fn: (env: EnvelopeOf<T>) => void): () => void {
    let set = this.typed.get(type);
    if (!set) this.typed.set(type, (set = new Set()));
    const f = fn as (env: Envelope) => void;
    set.add(f);
    return () => set!.delete(f);
  }

  /** onError calls fn with ERRORs the edge sends that no pending run or call claims, and with connection failures. */
  onError(fn: (e: Error) => void): () => void {
    this.errorListeners.add(fn);
    return () => this.errorListeners.delete(fn);
  }

  /** onStatus calls fn when the connection opens, drops or closes. */
  onStatus(fn: (s: Status) => void): () => void {
    this.statusListeners.add(fn);
    return () => this.statusListeners.delete(fn);
  }

  /** onAudio calls fn with each audio chunk the agent sends. */
  onAudio(fn: (a: AudioChunk) => void): () => void {
    this.audioListeners.add(fn);
    return () => this.audioListeners.delete(fn);
  }

  /**
   * send sends one envelope (numbered, and sent again after a reconnect
   * until the edge has it; the edge drops a resent one by id). It returns
   * the envelope id. Use the typed helpers below where one fits.
   */
  send<T extends EventType>(channel: Channel, type: T, payload: PayloadMap[T], extra: { run_id?: string; thread_id?: string } = {}): string {
    if (this.closed) throw new Error("client closed");
    const id = newUUID();
    this.outbox.push({ env: { id, session: this.session, channel, type, payload, ...extra }, sent: false });
    this.flush();
    return id;
  }

  /**
   * sendText sends a user message; the edge starts a run for it. Iterate
   * the handle for the answer's text, or await handle.done.
   */
  async sendText(text: string, opts: { threadId?: string } = {}): Promise<RunHandle> {
    const messageId = newUUID();
    const runId = await nameUUID("run", this.session, messageId);
    const run = this.runState(runId);
    const extra = opts.threadId ? { thread_id: opts.threadId } : {};
    this.send("USER", "TEXT_MESSAGE_START", { message_id: messageId, text }, extra);
    const endId = this.send("USER", "TEXT_MESSAGE_END", { message_id: messageId }, extra);
    run.relatedId = endId;
    this.related.set(endId, (e) => {
      run.failure = e;
      run.reject(e);
      run.end();
    });
    const client = this;
    return {
      messageId,
      runId,
      done: run.done,
      cancel: async () => {
        this.send("USER", "RUN_CANCEL", { run_id: runId }, { run_id: runId });
      },
      [Symbol.asyncIterator](): AsyncIterator<string> {
        run.iterated = true;
        return {
          async next(): Promise<IteratorResult<string>> {
            for (;;) {
              const c = run.chunks.shift();
              if (c !== undefined) {
                client.grantAll();
                return { value: c, done: false };
              }
              if (run.failure) throw run.failure;
              if (run.finished) return { value: undefined, done: true };
              await new Promise<void>((res) => (run.wake = res));
            }
          },
          async return(): Promise<IteratorResult<string>> {
            run.iterated = false;
            run.chunks = [];
            client.grantAll();
            return { value: undefined, done: true };
          },
        };
      },
    };
  }

  /** callTool calls a tool; onUpdate hears its progress (TOOL_UPDATE). */
  callTool(tool: string, params: Record<string, unknown> = {}, opts: { onUpdate?: (u: ToolUpdatePayload) => void } = {}): ToolCall {
    const callId = newUUID();
    const done = new Promise<ToolDonePayload>((resolve, reject) => {
      this.tools.set(callId, { resolve, reject, onUpdate: opts.onUpdate });
    });
    done.catch(() => undefined);
    const id = this.send("USER", "TOOL_CALL", { call_id: callId, tool, params });
    const entry = this.tools.get(callId);
    if (entry) entry.relatedId = id;
    this.related.set(id, (e) => {
      this.tools.get(callId)?.reject(e);
      this.tools.delete(callId);
    });
    return {
      callId,
      done,
      cancel: async (reason?: string) => {
        this.send("USER", "TOOL_CANCEL", reason ? { call_id: callId, reason } : { call_id: callId });
      },
    };
  }

  /** sendAudio sends one chunk of audio towards the agent (AUDIO_IN, base64). */
  sendAudio(data: Uint8Array, opts: { mime: string; messageId?: string; durationMs?: number }): string {
    const payload: PayloadMap["AUDIO_CHUNK"] = { message_id: opts.messageId ?? newUUID(), mime: opts.mime, data: toBase64(data) };
    if (opts.durationMs !== undefined) payload.duration_ms = String(Math.round(opts.durationMs));
    this.send("AUDIO_IN", "AUDIO_CHUNK", payload);
    return payload.message_id;
  }

  /** pause asks the edge to stop sending on channel (default AGENT) until resume; no credit is granted meanwhile. */
  pause(channel: Channel = "AGENT"): void {
    if (this.paused.has(channel)) return;
    this.paused.add(channel);
    this.send("SYSTEM", "PAUSE_CHANNEL", { channel });
  }

  /** resume lifts a pause. */
  resume(channel: Channel = "AGENT"): void {
    if (!this.paused.delete(channel)) return;
    this.send("SYSTEM", "RESUME_CHANNEL", { channel });
    this.grantAll();
  }

  // ---- connection loop ----

  private status(s: Status): void {
    for (const f of this.statusListeners) safe(() => f(s));
  }

  private fail(e: Error): void {
    for (const f of this.errorListeners) safe(() => f(e));
  }

  private async freshToken(): Promise<string> {
    const t = typeof this.tokenSource === "function" ? await this.tokenSource() : this.tokenSource;
    this.token = t;
    return t;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((res) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        res();
      }
      this.wakeLoop = done;
    });
  }

  private async run(): Promise<void> {
    if (!this.positionLoaded) {
      this.position = (await this.o.store.load(this.session)) ?? 0;
      this.positionLoaded = true;
    }
    let attempt = 0;
    let tried = 0; // transports tried without a handshake, this round
    let first = true;
    while (!this.closed) {
      this.status(first ? "connecting" : "reconnecting");
      const base = this.urls[this.urlIndex % this.urls.length];
      const name = this.o.transports[this.transportIndex % this.o.transports.length];
      const c: Conn = {
        n: ++this.connCount,
        abort: new AbortController(),
        seq: 0,
        handshaken: false,
        hai: () => undefined,
        ended: () => undefined,
        credit: new Map(),
      };
      const hai = new Promise<void>((res) => (c.hai = res));
      const ended = new Promise<CloseInfo>((res) => (c.ended = res));
      this.conn = c;
      let info: CloseInfo | undefined;
      let refused: HTTPError | undefined;
      let token: string;
      try {
        token = await this.freshToken();
      } catch (e) {
        // The app could not give a token: not the transport's fault.
        this.fail(new Error(`token: ${e instanceof Error ? e.message : String(e)}`));
        this.conn = undefined;
        await this.sleep(this.backoff(attempt++));
        continue;
      }
      try {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const timeout = new Promise<never>((_, rej) => {
          timer = setTimeout(() => rej(new Error(`${name} to ${base}: no handshake within ${this.o.handshakeTimeoutMs} ms`)), this.o.handshakeTimeoutMs);
        });
        const opening = open(
          name,
          {
            base,
            token,
            session: this.session,
            hello: JSON.stringify(this.hello(c)),
            lastSeq: this.position,
            fetch: this.o.fetch,
            WebSocket: this.o.WebSocket,
            postToken: () => this.token,
            sink: {
              frame: (text) => this.onFrame(c, text),
              answer: (env) => this.receive(c, env),
              closed: (i) => c.ended(i),
            },
          },
          c.abort.signal,
        );
        try {
          c.t = await Promise.race([opening, timeout]);
          await Promise.race([hai, timeout, ended.then((i) => Promise.reject(new Error(`closed before the handshake: ${i.code} ${i.reason}`)))]);
        } finally {
          clearTimeout(timer);
        }
        first = false;
        attempt = 0;
        tried = 0;
        this.opened?.resolve();
        this.status("open");
        this.scheduleRefresh(c);
        info = await ended;
      } catch (e) {
        if (e instanceof HTTPError) refused = e;
        c.abort.abort();
        c.t?.close();
        if (!this.closed) this.fail(e instanceof Error ? e : new Error(String(e)));
      }
      clearTimeout(this.refreshTimer);
      c.abort.abort();
      this.conn = undefined;
      if (this.closed) break;
      if (refused && (refused.status === 403 || refused.status === 404)) {
        // Not this user's session: no retry will change that.
        const err = refused;
        this.opened?.reject(err);
        void this.close();
        break;
      }
      if (!info) {
        // Blocked or down: the next transport, then the next edge.
        if (refused?.status !== 401) {
          tried++;
          this.transportIndex++;
        }
        if (tried >= this.o.transports.length || refused?.status === 401) {
          tried = 0;
          this.urlIndex++;
          await this.sleep(this.backoff(attempt++));
        }
        continue;
      }
      if (c.refreshing) continue; // our own refresh: a fresh token, at once
      switch (info.code) {
        case CloseCode.TokenExpired:
          continue; // a fresh token, at once
        case CloseCode.PolicyViolation:
          this.fail(new Error(`edge closed the connection: ${info.reason}`));
          this.opened?.reject(new Error(info.reason));
          void this.close();
          return;
        default:
          // Cut, drained, slow, or heartbeat: another edge, after a jittered pause.
          this.urlIndex++;
          await this.sleep(this.backoff(attempt++));
      }
    }
  }

  private backoff(attempt: number): number {
    const cap = Math.min(this.o.backoff.maxMs, this.o.backoff.initialMs * 2 ** Math.min(attempt, 20));
    return Math.random() * cap;
  }

  // scheduleRefresh reconnects with a fresh token a little before the
  // current one expires, so the edge never has to cut the connection.
  private scheduleRefresh(c: Conn): void {
    if (!this.o.refreshBeforeExpiry || typeof this.tokenSource !== "function") return;
    const exp = jwtExpiry(this.token);
    if (exp === undefined) return;
    const left = exp - Date.now();
    const lead = Math.min(30_000, left * 0.2);
    // A token too close to its end (or past it, within the edge's clock
    // skew allowance) is left to the edge's 4002, not refreshed in a loop.
    if (left - lead < MIN_REFRESH_MS) return;
    this.refreshTimer = setTimeout(() => {
      if (this.conn !== c) return;
      c.refreshing = true;
      c.t?.close(CloseCode.Normal, "token refresh");
    }, Math.max(0, left - lead));
  }

  private hello(c: Conn): Record<string, unknown> {
    return {
      id: newUUID(),
      session: this.session,
      seq: String(++c.seq),
      ts: String(Date.now()),
      channel: "SYSTEM",
      type: "HAI",
      payload: {
        haip_version: VERSION,
        accept_major: [1],
        accept_events: EVENT_TYPES,
        capabilities: { flow_control: { initial_credit_messages: this.o.credit } },
        last_rx_seq: String(this.position),
      },
    };
  }

  // ---- receiving ----

  private onFrame(c: Conn, text: string): void {
    if (this.conn !== c) return; // an old connection's last words
    let env: Envelope;
    try {
      env = parseEnvelope(text);
    } catch (e) {
      this.fail(new Error(`bad envelope from the edge: ${(e as Error).message}`));
      return;
    }
    this.receive(c, env);
  }

  private receive(c: Conn, env: Envelope): void {
    if (this.conn !== c || this.closed) return;
    const seq = Number(env.seq);
    if (isControl(env.type) || ((env.type === "TOOL_LIST" || env.type === "TOOL_SCHEMA") && seq <= this.position)) {
      this.control(c, env);
      this.emit(env);
      return;
    }
    if (seq <= this.position) return; // a duplicate
    if (seq > this.position + 1) {
      if (this.held.size < MAX_GAP_HELD) this.held.set(seq, env);
      this.scheduleGap(c);
      return;
    }
    this.deliver(env);
    let next: Envelope | undefined;
    while ((next = this.held.get(this.position + 1))) {
      this.held.delete(this.position + 1);
      this.deliver(next);
    }
    for (const s of this.held.keys()) if (s <= this.position) this.held.delete(s);
    if (this.held.size === 0) {
      clearTimeout(this.gapTimer);
      this.gapTimer = undefined;
    }
  }

  private scheduleGap(c: Conn): void {
    if (this.gapTimer) return;
    this.gapTimer = setTimeout(() => {
      this.gapTimer = undefined;
      if (this.conn !== c || this.held.size === 0) return;
      const upTo = Math.min(...this.held.keys()) - 1;
      this.send("SYSTEM", "REPLAY_REQUEST", { from_seq: String(this.position + 1), to_seq: String(upTo) });
      this.scheduleGap(c);
    }, this.o.gapWaitMs);
  }

  private control(c: Conn, env: Envelope): void {
    if (env.ack !== undefined && !c.t?.posts) {
      // The edge has every envelope of this connection up to ack.
      const a = Number(env.ack);
      this.outbox = this.outbox.filter((o) => !(o.conn === c.n && o.seq !== undefined && o.seq <= a));
    }
    switch (env.type) {
      case "HAI":
        if (!c.handshaken) this.handshaken(c, env);
        return;
      case "PING":
        if (!c.t?.posts) this.send("SYSTEM", "PONG", env.payload.nonce !== undefined ? { nonce: env.payload.nonce } : {});
        return;
      case "FLOW_UPDATE": {
        const ch = env.payload.channel;
        c.credit.set(ch, (c.credit.get(ch) ?? 0) + (env.payload.add_messages ?? 0));
        this.flush();
        return;
      }
      case "ERROR": {
        const p = env.payload;
        if (p.code === "RESUME_FAILED" && typeof p.detail?.last_seq === "string") {
          // The log ends before our position (another cluster, or a
          // purged session): follow the edge from its end.
          this.position = Number(p.detail.last_seq);
          this.o.store.save(this.session, this.position);
        } else if (p.code === "REPLAY_TOO_OLD" && typeof p.detail?.first_available === "string") {
          const first = Number(p.detail.first_available);
          if (first - 1 > this.position) {
            this.position = first - 1;
            this.o.store.save(this.session, this.position);
          }
        }
        const err = new HaipError(p);
        const claim = p.related_id ? this.related.get(p.related_id) : undefined;
        if (claim) {
          this.related.delete(p.related_id!);
          claim(err);
        } else this.fail(err);
        return;
      }
    }
  }

  private handshaken(c: Conn, hai: EnvelopeOf<"HAI">): void {
    c.handshaken = true;
    this.consumed.clear();
    if (!c.t?.posts) {
      const n = hai.payload.capabilities?.flow_control?.initial_credit_messages ?? Number.MAX_SAFE_INTEGER;
      for (const ch of CHANNELS) c.credit.set(ch, n);
    }
    // Everything not yet confirmed goes again, renumbered on this
    // connection; control messages were the old connection's own (grants
    // and pauses are made again below).
    this.outbox = this.outbox.filter((o) => !isControl(o.env.type));
    for (const o of this.outbox) o.sent = false;
    const grants: Outgoing[] = [];
    if (c.t?.posts) {
      // The edge built this stream's HAI without flow control; it counts
      // from our first FLOW_UPDATE per channel.
      for (const ch of CHANNELS) {
        grants.push({ env: { id: newUUID(), session: this.session, channel: "SYSTEM", type: "FLOW_UPDATE", payload: { channel: ch, add_messages: this.o.credit } }, sent: false });
      }
    }
    for (const ch of this.paused) {
      grants.push({ env: { id: newUUID(), session: this.session, channel: "SYSTEM", type: "PAUSE_CHANNEL", payload: { channel: ch } }, sent: false });
    }
    this.outbox.unshift(...grants);
    c.hai();
    this.flush();
  }

  private deliver(env: Envelope): void {
    this.position = Number(env.seq);
    this.o.store.save(this.session, this.position);
    this.consumed.set(env.channel, (this.consumed.get(env.channel) ?? 0) + 1);
    if (env.run_id) this.route(env);
    switch (env.type) {
      case "TOOL_UPDATE": {
        this.tools.get(env.payload.call_id)?.onUpdate?.(env.payload);
        break;
      }
      case "TOOL_DONE": {
        const t = this.tools.get(env.payload.call_id);
        if (t) {
          this.tools.delete(env.payload.call_id);
          if (t.relatedId) this.related.delete(t.relatedId);
          t.resolve(env.payload);
        }
        break;
      }
      case "AUDIO_CHUNK":
        if (env.channel === "AUDIO_OUT" && env.payload.data !== undefined) {
          const a: AudioChunk = { messageId: env.payload.message_id, mime: env.payload.mime, data: fromBase64(env.payload.data), envelope: env };
          for (const f of this.audioListeners) safe(() => f(a));
        }
        break;
    }
    this.emit(env);
    this.grant(env.channel);
  }

  private runState(runId: string): RunState {
    let r = this.runs.get(runId);
    if (!r) this.runs.set(runId, (r = new RunState(runId)));
    return r;
  }

  private route(env: Envelope): void {
    const r = this.runs.get(env.run_id!);
    if (!r || r.finished) return;
    switch (env.type) {
      case "TEXT_MESSAGE_START":
        if (env.channel === "AGENT" && env.payload.text) r.push(env.payload.text);
        break;
      case "TEXT_MESSAGE_PART":
        if (env.channel === "AGENT") r.push(env.payload.text);
        break;
      case "RUN_ERROR":
        r.error = env.payload;
        break;
      case "RUN_FINISHED": {
        const status = env.payload.status ?? "OK";
        r.resolve({ runId: r.runId, status, summary: env.payload.summary, text: r.text, error: r.error });
        r.end();
        this.runs.delete(r.runId);
        if (r.relatedId) this.related.delete(r.relatedId);
        break;
      }
    }
  }

  private emit(env: Envelope): void {
    for (const f of this.typed.get(env.type) ?? []) safe(() => f(env));
    for (const f of this.listeners) safe(() => f(env));
  }

  // ---- credit ----

  private backlog(): number {
    let n = 0;
    for (const r of this.runs.values()) if (r.iterated) n += r.chunks.length;
    return n;
  }

  // grant gives the edge back the credit the app has consumed on a
  // channel, in batches of half the window, unless the app paused or
  // lets text pile up unread.
  private grant(ch: string): void {
    const used = this.consumed.get(ch) ?? 0;
    if (used < Math.max(1, this.o.credit / 2) || this.paused.has(ch as Channel) || this.backlog() > this.o.highWaterMark) return;
    this.consumed.set(ch, 0);
    this.send("SYSTEM", "FLOW_UPDATE", { channel: ch, add_messages: used });
  }

  private grantAll(): void {
    for (const ch of this.consumed.keys()) this.grant(ch);
  }

  // ---- sending ----

  private flush(): void {
    const c = this.conn;
    if (!c?.handshaken || !c.t) return;
    // One POST at a time, so the edge stores envelopes in the order sent.
    if (c.t.posts && c.posting) return;
    const batch: string[] = [];
    const items: Outgoing[] = [];
    for (const o of this.outbox) {
      if (o.sent) continue;
      if (!c.t.posts && !exempt(o.env.type)) {
        const left = c.credit.get(o.env.channel) ?? 0;
        if (left < 1) break; // keep order: wait for FLOW_UPDATE
        c.credit.set(o.env.channel, left - 1);
      }
      o.sent = true;
      o.conn = c.n;
      o.seq = ++c.seq;
      const env: Record<string, unknown> = { ...o.env, seq: String(o.seq), ts: String(Date.now()) };
      if (this.position > 0 && !c.t.posts) env.ack = String(this.position);
      batch.push(JSON.stringify(env));
      items.push(o);
    }
    if (!batch.length) return;
    const t = c.t;
    c.posting = t.posts;
    t.send(batch).then(
      () => {
        // What went by POST is stored (or refused, with an ERROR).
        if (t.posts) {
          this.outbox = this.outbox.filter((o) => !items.includes(o));
          c.posting = false;
          this.flush();
        }
      },
      (e) => {
        c.posting = false;
        if (this.conn !== c) return;
        for (const o of items) o.sent = false;
        this.fail(e instanceof Error ? e : new Error(String(e)));
        if (e instanceof HTTPError && e.status < 500 && e.status !== 401 && e.status !== 429) {
          // Refused as a whole (bad request): do not send it again.
          this.outbox = this.outbox.filter((o) => !items.includes(o));
          return;
        }
        c.t?.close(CloseCode.Abnormal, "send failed");
      },
    );
  }
}

// exempt lists what the edge never refuses for want of credit.
function exempt(t: EventType): boolean {
  return isControl(t);
}

function safe(f: () => void): void {
  try {
    f();
  } catch (e) {
    queueMicrotask(() => {
      throw e;
    });
  }
}

/** jwtExpiry returns a JWT's exp in Unix milliseconds, if it has one. */
export function jwtExpiry(token: string): number | undefined {
  const part = token.split(".")[1];
  if (!part) return undefined;
  try {
    const json = new TextDecoder().decode(fromBase64(part.replace(/-/g, "+").replace(/_/g, "/")));
    const exp = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === "number" ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

function toBase64(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromBase64(s: string): Uint8Array {
  const pad = s.length % 4 ? "=".repeat(4 - (s.length % 4)) : "";
  const bin = atob(s + pad);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
