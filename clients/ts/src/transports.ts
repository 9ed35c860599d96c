// The three ways to reach an edge. Each delivers the edge's envelopes as
// text to a sink and says once, with a close code, when it ended; the
// client core does everything else (handshake, position, credit).
//
//   websocket  GET /haip/websocket?token=…: both ways on the socket
//   sse        GET /haip/sse?session=…&token=… (Server-Sent Events) from the
//              edge; POST /haip/messages to it
//   stream     POST /haip/stream?session=…&token=… whose body is the HAI;
//              NDJSON from the edge; POST /haip/messages to it (half
//              duplex: a browser cannot stream a request body over HTTP/1.1)

import { type Envelope, parseEnvelope } from "./types.js";

/** The transports, in the order a client tries them by default. */
export type TransportName = "websocket" | "sse" | "stream";
export const TRANSPORTS: readonly TransportName[] = ["websocket", "sse", "stream"];

/** Close codes the edge uses (edge/closecodes.go). */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  InternalError: 1011,
  TryAgainLater: 1013,
  /** No close frame: the connection was cut. */
  Abnormal: 1006,
  SlowConsumer: 4000,
  HeartbeatTimeout: 4001,
  TokenExpired: 4002,
} as const;

/** How a connection ended. */
export interface CloseInfo {
  code: number;
  reason: string;
}

/** What a transport hands the client core. */
export interface Sink {
  /** frame is one envelope's text as the edge sent it on the stream. */
  frame(text: string): void;
  /** answer is an envelope from a POST's answer (a reply, or an ERROR built from a refusal). */
  answer(env: Envelope): void;
  /** closed says the connection ended; called once. */
  closed(info: CloseInfo): void;
}

/** An open connection to an edge. */
export interface Transport {
  readonly name: TransportName;
  /** posts: envelopes go up by POST (their answers come through Sink.answer). */
  readonly posts: boolean;
  /** send sends encoded envelopes, in order. */
  send(texts: string[]): Promise<void>;
  /** close ends the connection; the sink hears of it. */
  close(code?: number, reason?: string): void;
}

/** HTTPError is an edge's refusal of a request: {error, code, message, details}. */
export class HTTPError extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`edge answered HTTP ${status}: ${body.slice(0, 300)}`);
  }
}

/** A WebSocket constructor: the browser's, Node's (22+, or 20 with --experimental-websocket), or the ws package's. */
export type WebSocketCtor = new (url: string) => WebSocket;

/** What opening a transport needs. */
export interface OpenParams {
  base: string;
  token: string;
  session: string;
  /** hello is the client's HAI (websocket and stream); sse builds it from the query. */
  hello: string;
  lastSeq?: number;
  sink: Sink;
  WebSocket?: WebSocketCtor;
  fetch: typeof fetch;
  /** postToken returns the token for a POST (the freshest one). */
  postToken: () => string;
}

/** endpoint is the URL of an edge path from a base URL (http, https, ws or wss). */
export function endpoint(base: string, path: string, query: Record<string, string | undefined>, ws = false): string {
  const u = new URL(base);
  const secure = u.protocol === "https:" || u.protocol === "wss:";
  u.protocol = ws ? (secure ? "wss:" : "ws:") : secure ? "https:" : "http:";
  u.pathname = u.pathname.replace(/\/(haip\/(websocket|sse|stream|messages))?\/?$/, "") + path;
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== "") u.searchParams.set(k, v);
  return u.toString();
}

/** open opens one transport; it resolves once the connection is up (not yet handshaken). */
export async function open(name: TransportName, p: OpenParams, signal: AbortSignal): Promise<Transport> {
  switch (name) {
    case "websocket":
      return openWebSocket(p, signal);
    case "sse":
      return openSSE(p, signal);
    case "stream":
      return openStream(p, signal);
  }
}

function openWebSocket(p: OpenParams, signal: AbortSignal): Promise<Transport> {
  const Ctor = p.WebSocket ?? (globalThis as { WebSocket?: WebSocketCtor }).WebSocket;
  if (!Ctor) return Promise.reject(new Error("no WebSocket here: pass options.WebSocket (e.g. the ws package)"));
  return new Promise((resolve, reject) => {
    const ws = new Ctor(endpoint(p.base, "/haip/websocket", { token: p.token }, true));
    let opened = false;
    let ended = false;
    const end = (info: CloseInfo): void => {
      if (ended) return;
      ended = true;
      signal.removeEventListener("abort", onAbort);
      if (opened) p.sink.closed(info);
      else reject(new Error(`websocket closed before it opened (${info.code} ${info.reason})`));
    };
    const onAbort = (): void => {
      try {
        ws.close(CloseCode.Normal, "client closing");
      } catch {
        /* already closing */
      }
      end({ code: CloseCode.Normal, reason: "client closing" });
    };
    signal.addEventListener("abort", onAbort);
    ws.onopen = () => {
      opened = true;
      ws.send(p.hello);
      resolve({
        name: "websocket",
        posts: false,
        send: async (texts) => {
          for (const t of texts) ws.send(t);
        },
        close: (code = CloseCode.Normal, reason = "") => {
          try {
            ws.close(code, reason);
          } catch {
            /* already closing */
          }
          end({ code, reason });
        },
      });
    };
    ws.onmessage = (ev: MessageEvent) => {
      if (typeof ev.data === "string") p.sink.frame(ev.data);
    };
    ws.onclose = (ev: CloseEvent) => end({ code: ev.code, reason: ev.reason });
    ws.onerror = () => {
      if (!opened) end({ code: CloseCode.Abnormal, reason: "websocket error" });
    };
  });
}

async function openSSE(p: OpenParams, signal: AbortSignal): Promise<Transport> {
  const url = endpoint(p.base, "/haip/sse", {
    session: p.session,
    token: p.token,
    last_rx_seq: p.lastSeq === undefined ? undefined : String(p.lastSeq),
  });
  const ac = linked(signal);
  const resp = await p.fetch(url, { headers: { Accept: "text/event-stream" }, signal: ac.signal, cache: "no-store" });
  if (!resp.ok || !resp.body) throw new HTTPError(resp.status, await resp.text().catch(() => ""));
  let closeInfo: CloseInfo | undefined;
  const t = oneWay("sse", p, ac);
  pump(resp.body, ac, p.sink, sseParser(p.sink, (c) => (closeInfo = c)), () => closeInfo);
  return t;
}

async function openStream(p: OpenParams, signal: AbortSignal): Promise<Transport> {
  const url = endpoint(p.base, "/haip/stream", { session: p.session, token: p.token });
  const ac = linked(signal);
  const resp = await p.fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/x-ndjson" },
    body: p.hello + "\n",
    signal: ac.signal,
    cache: "no-store",
  });
  if (!resp.ok || !resp.body) throw new HTTPError(resp.status, await resp.text().catch(() => ""));
  let last = "";
  const t = oneWay("stream", p, ac);
  pump(
    resp.body,
    ac,
    p.sink,
    (line: string) => {
      if (line.trim() === "") return;
      last = line;
      p.sink.frame(line);
    },
    () => streamEnd(last),
  );
  return t;
}

// streamEnd reads why an NDJSON stream ended from its last line: an ERROR
// that names a close (an expired token, a shutdown).
function streamEnd(last: string): CloseInfo | undefined {
  try {
    const env = parseEnvelope(last);
    if (env.type !== "ERROR") return undefined;
    switch (env.payload.code) {
      case "AUTHENTICATION_FAILED":
        return { code: CloseCode.TokenExpired, reason: env.payload.message };
      case "SERVER_SHUTDOWN":
        return { code: CloseCode.GoingAway, reason: env.payload.message };
    }
  } catch {
    /* not an envelope */
  }
  return undefined;
}

// linked is an AbortController that also aborts with parent.
function linked(parent: AbortSignal): AbortController {
  const ac = new AbortController();
  if (parent.aborted) ac.abort();
  else parent.addEventListener("abort", () => ac.abort(), { once: true });
  return ac;
}

// oneWay is the transport of a stream read from the edge, with sends by POST.
function oneWay(name: TransportName, p: OpenParams, ac: AbortController): Transport {
  return {
    name,
    posts: true,
    send: (texts) => post(p, texts, ac.signal),
    close: () => ac.abort(),
  };
}

// pump reads body line by line until it ends, then tells the sink why.
function pump(body: ReadableStream<Uint8Array>, ac: AbortController, sink: Sink, line: (l: string) => void, why: () => CloseInfo | undefined): void {
  const reader = body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  void (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i: number;
        while ((i = buf.indexOf("\n")) >= 0) {
          const l = buf.slice(0, i).replace(/\r$/, "");
          buf = buf.slice(i + 1);
          line(l);
        }
      }
    } catch {
      /* cut, or aborted */
    }
    const info = why();
    sink.closed(info ?? (ac.signal.aborted ? { code: CloseCode.Normal, reason: "client closing" } : { code: CloseCode.Abnormal, reason: "stream ended" }));
    ac.abort();
  })();
}

// sseParser parses event-stream lines: data lines make an event, and the
// edge's last comment ": close <code> <reason>" says why a stream ended.
function sseParser(sink: Sink, onClose: (c: CloseInfo) => void): (line: string) => void {
  let data: string[] = [];
  return (line: string) => {
    if (line === "") {
      if (data.length) sink.frame(data.join("\n"));
      data = [];
      return;
    }
    if (line.startsWith(":")) {
      const m = /^: ?close (\d+) ?(.*)$/.exec(line);
      if (m) onClose({ code: Number(m[1]), reason: m[2] });
      return;
    }
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? "" : line.slice(i + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
  };
}

interface PostResult {
  id: string;
  status: string;
  replies?: unknown[];
  error?: { code: string; message: string; related_id?: string; detail?: Record<string, unknown> };
}

// post sends envelopes by POST /haip/messages and hands what the edge
// answers (replies, refusals as ERROR) to the sink.
async function post(p: OpenParams, texts: string[], signal: AbortSignal): Promise<void> {
  const body = texts.length === 1 ? texts[0] : texts.join("\n") + "\n";
  const resp = await p.fetch(endpoint(p.base, "/haip/messages", {}), {
    method: "POST",
    headers: {
      "Content-Type": texts.length === 1 ? "application/json" : "application/x-ndjson",
      Authorization: `Bearer ${p.postToken()}`,
    },
    body,
    signal,
  });
  if (!resp.ok) throw new HTTPError(resp.status, await resp.text().catch(() => ""));
  const answer = (await resp.json()) as { results?: PostResult[] };
  for (const r of answer.results ?? []) {
    for (const reply of r.replies ?? []) {
      try {
        p.sink.answer(parseEnvelope(typeof reply === "string" ? reply : JSON.stringify(reply)));
      } catch {
        /* not an envelope: ignore */
      }
    }
    if (r.error) {
      p.sink.answer({
        id: r.id,
        session: p.session,
        seq: "0",
        ts: String(Date.now()),
        channel: "SYSTEM",
        type: "ERROR",
        payload: { ...r.error, related_id: r.error.related_id ?? r.id },
      });
    }
  }
}
