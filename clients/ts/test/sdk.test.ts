// The official HAIP v1 SDK (vendored unchanged in haip-sdk-v1/, compiled
// to build/haip-sdk-v1) against real edges: handshake, text, the agent's
// reply, a tool call the way its README makes one (on channel AGENT), and
// a socket killed in the middle of an answer, after which the SDK's own
// reconnect lands on another edge and resumes exactly: nothing lost,
// nothing twice. The only help it gets is the Node shim its ORIGIN.md
// describes.

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { type Server, type Socket, connect, createServer } from "node:net";
import { after, before, test } from "node:test";

import { Fabric, token, until } from "./edges.js";
import { answer, isLogMessage } from "./shared.js";

const require = createRequire(import.meta.url);
// eslint-disable-next-line @typescript-eslint/no-require-imports
const sdk = require("../haip-sdk-v1/index.js") as {
  createHAIPClient(config: Record<string, unknown>): SDKClient;
  HAIPUtils: { validateMessage(m: unknown): boolean };
};

interface SDKMessage {
  id: string;
  seq: string;
  type: string;
  channel: string;
  run_id?: string;
  payload: Record<string, unknown>;
}

interface SDKClient {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  on(event: string, fn: (arg: never) => void): void;
  sendTextMessage(channel: string, text: string, author?: string): Promise<string>;
  callTool(channel: string, tool: string, params?: Record<string, unknown>): Promise<string>;
  transport: SDKTransport;
}

interface WS {
  on(event: "message", fn: (data: Buffer, isBinary: boolean) => void): void;
}

interface SDKTransport {
  ws: WS | null;
  connect(): Promise<void>;
  emit(event: string, arg: unknown): boolean;
  setReconnectConfig(maxAttempts: number, delay: number): void;
}

/**
 * installTextFrameShim is the one Node shim (haip-sdk-v1/ORIGIN.md): ws 8
 * hands text frames over as Buffers, which the SDK's transport ignores as
 * binary. The shim parses the text frames of the transport's current
 * socket (the one the SDK sends on; after a drop the SDK abandons older
 * sockets without closing them) and emits them as the SDK's own string
 * branch would.
 */
function installTextFrameShim(t: SDKTransport): void {
  const connectOrig = t.connect.bind(t);
  t.connect = () => {
    const p = connectOrig(); // sets t.ws synchronously
    const ws = t.ws;
    ws?.on("message", (data, isBinary) => {
      if (isBinary || t.ws !== ws) return;
      try {
        const msg = JSON.parse(data.toString("utf8"));
        if (sdk.HAIPUtils.validateMessage(msg)) t.emit("message", msg);
      } catch {
        /* not JSON: the SDK would drop it too */
      }
    });
    return p;
  };
}

/** cutProxy is a TCP proxy whose connections the test can cut, and whose target it can move. */
class CutProxy {
  private server: Server;
  private socks = new Set<Socket>();
  port = 0;
  constructor(private target: number) {
    this.server = createServer((down) => {
      const up = connect(this.target, "127.0.0.1");
      this.socks.add(down).add(up);
      const drop = (): void => {
        down.destroy();
        up.destroy();
        this.socks.delete(down);
        this.socks.delete(up);
      };
      down.on("error", drop).on("close", drop);
      up.on("error", drop).on("close", drop);
      down.pipe(up);
      up.pipe(down);
    });
  }
  listen(): Promise<void> {
    return new Promise((res) =>
      this.server.listen(0, "127.0.0.1", () => {
        this.port = (this.server.address() as { port: number }).port;
        res();
      }),
    );
  }
  /** cut drops every connection at once (no close frame) and sends new ones to target. */
  cut(target: number): void {
    this.target = target;
    for (const s of this.socks) s.destroy();
    this.socks.clear();
  }
  close(): Promise<void> {
    this.cut(this.target);
    return new Promise((res) => this.server.close(() => res()));
  }
}

const fabric = new Fabric();
before(() => fabric.start());
after(() => fabric.stop());

const portOf = (base: string): number => Number(new URL(base).port);

test("the official v1 SDK: text, reply, tool call, a cut socket resumed exactly on another edge", async () => {
  const first = await fabric.edge("sdk-first");
  const second = await fabric.edge("sdk-second");
  const proxy = new CutProxy(portOf(first.base));
  await proxy.listen();
  // The SDK logs to the console at every step; keep what it says for a
  // failure's message instead.
  const said: string[] = [];
  const saved = { debug: console.debug, info: console.info, warn: console.warn, error: console.error };
  for (const k of ["debug", "info", "warn", "error"] as const) console[k] = (...a: unknown[]) => void said.push(a.map(String).join(" "));

  const client = sdk.createHAIPClient({
    url: `ws://127.0.0.1:${proxy.port}/haip/websocket`,
    token: token("sdk-user"),
    reconnectDelay: 100,
    reconnectAttempts: 5,
  });
  client.on("error", ((e: unknown) => void said.push(`error event: ${String(e)}`)) as (arg: never) => void);
  installTextFrameShim(client.transport);

  // What the app receives: every message the SDK handles.
  const got: SDKMessage[] = [];
  const log: SDKMessage[] = [];
  client.on("message", ((m: SDKMessage) => {
    got.push(m);
    if (isLogMessage(m as Parameters<typeof isLogMessage>[0], log.length)) log.push(m);
  }) as (arg: never) => void);
  let handshakes = 0;
  client.on("handshake", (() => handshakes++) as (arg: never) => void);
  const textOf = (runId: string): string =>
    log
      .filter((m) => m.run_id === runId && m.channel === "AGENT" && (m.type === "TEXT_MESSAGE_START" || m.type === "TEXT_MESSAGE_PART"))
      .map((m) => (m.payload.text as string | undefined) ?? "")
      .join("");
  const finished = (): SDKMessage[] => log.filter((m) => m.type === "RUN_FINISHED");

  try {
    await client.connect();
    await until("the SDK's handshake", () => handshakes === 1);

    // Text, and the agent's reply.
    await client.sendTextMessage("USER", "hello sdk", "tester");
    await until("the first run's end", () => finished().length === 1, 15_000);
    assert.equal(textOf(finished()[0].run_id!), answer("hello sdk"));

    // A tool call as the SDK's README makes it: on channel AGENT.
    const callId = await client.callTool("AGENT", "add", { a: 2, b: 3 });
    await until("TOOL_DONE", () => log.some((m) => m.type === "TOOL_DONE" && m.payload.call_id === callId), 15_000);
    const done = log.find((m) => m.type === "TOOL_DONE" && m.payload.call_id === callId)!;
    assert.deepEqual(done.payload.result, { result: 5 });
    assert.ok(!got.some((m) => m.type === "ERROR"), `ERRORs: ${JSON.stringify(got.filter((m) => m.type === "ERROR").map((m) => m.payload))}`);

    // A socket killed in the middle of an answer; the SDK reconnects by
    // itself, through the proxy, to the second edge.
    await client.sendTextMessage("USER", "cut the sdk", "tester");
    const parts = (): number => log.filter((m) => m.type === "TEXT_MESSAGE_PART").length;
    const before = parts();
    await until("the answer under way", () => parts() >= before + 4, 15_000);
    proxy.cut(portOf(second.base));
    await until("the cut run's end", () => finished().length === 2, 20_000);
    assert.ok(handshakes >= 2, "the SDK did not reconnect");
    assert.equal(textOf(finished()[1].run_id!), answer("cut the sdk"));

    // Nothing lost, nothing twice: the log the app saw is 1, 2, 3, …
    log.forEach((m, i) => assert.equal(Number(m.seq), i + 1, `message ${i} is seq ${m.seq}: ${log.map((x) => x.seq).join(",")}`));
    const errs = got.filter((m) => m.type === "ERROR").map((m) => m.payload);
    assert.deepEqual(errs, [], "the edge sent ERRORs");
  } catch (e) {
    saved.error("what the SDK logged:\n" + said.slice(-60).join("\n"));
    throw e;
  } finally {
    client.transport.setReconnectConfig(0, 0);
    await Promise.race([client.disconnect(), new Promise((r) => setTimeout(r, 2000))]);
    await proxy.close();
    await first.kill();
    await second.kill();
    // Its reconnect timers may still fire once; keep them quiet.
    setTimeout(() => Object.assign(console, saved), 3000).unref();
  }
});
