// The client against real edges, on each transport: a handshake, a
// streamed answer, a cut in the middle of an answer resumed on another
// edge with nothing lost or twice, a tool call, a cancel, a token that
// expires during the session, flow control and pause.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";

import { type Envelope, HaipClient, type TransportName } from "../src/index.js";
import { type Edge, Fabric, WebSocketImpl, token, until } from "./edges.js";
import { answer, isLogMessage } from "./shared.js";

const fabric = new Fabric();
before(() => fabric.start());
after(() => fabric.stop());

// logOf collects the session-log messages a client delivers.
function logOf(c: HaipClient): Envelope[] {
  const got: Envelope[] = [];
  c.onEnvelope((e) => {
    if (isLogMessage(e, got.length)) got.push(e);
  });
  return got;
}

function assertDense(envs: Envelope[], first = 1): void {
  envs.forEach((e, i) => assert.equal(Number(e.seq), first + i, `message ${i} has seq ${e.seq}: ${envs.map((x) => x.seq).join(",")}`));
}

function client(urls: string[], tr: TransportName, extra: Partial<ConstructorParameters<typeof HaipClient>[0]> = {}): HaipClient {
  return new HaipClient({ urls, token: () => token("alice"), transports: [tr], backoff: { initialMs: 50, maxMs: 500 }, WebSocket: WebSocketImpl, ...extra });
}

// The transports' suites run side by side, each test in turn.
describe("client", { concurrency: true }, () => {
for (const tr of (process.env.HAIP_TS_TRANSPORTS?.split(",") ?? ["websocket", "sse", "stream"]) as TransportName[]) {
  describe(tr, { concurrency: 1 }, () => {
    test("handshake and a streamed answer", async () => {
      const c = client([fabric.hub.base], tr);
      try {
        await c.connect();
        assert.equal(c.transport, tr);
        const log = logOf(c);
        const run = await c.sendText("hello");
        const chunks: string[] = [];
        for await (const chunk of run) chunks.push(chunk);
        const res = await run.done;
        assert.equal(res.status, "OK");
        assert.equal(res.text, answer("hello"));
        assert.equal(chunks.join(""), res.text);
        assert.ok(chunks.length > 5, `answer came in ${chunks.length} chunks`);
        assertDense(log);
        assert.equal(c.lastSeq, log.length);
      } finally {
        await c.close();
      }
    });

    test("a cut mid-answer resumes on another edge, nothing lost or twice", async () => {
      const first = await fabric.edge(`${tr}-cut`);
      const second = await fabric.edge(`${tr}-resume`);
      const c = client([first.base, second.base], tr);
      try {
        await c.connect();
        const log = logOf(c);
        const run = await c.sendText("cut me");
        const chunks: string[] = [];
        let killed: Promise<void> | undefined;
        for await (const chunk of run) {
          chunks.push(chunk);
          if (chunks.length === 4) killed = first.kill();
        }
        await killed;
        const res = await run.done;
        assert.equal(res.status, "OK");
        assert.equal(res.text, answer("cut me"));
        assert.equal(chunks.join(""), res.text);
        assert.equal(c.url, second.base);
        assertDense(log);
        // A reader from seq 0 sees the same log, message for message.
        const ref = client([second.base], tr, { session: c.session });
        try {
          const refLog = logOf(ref);
          await ref.connect();
          await until("the whole log", () => refLog.length >= log.length);
          assert.deepEqual(refLog.map((e) => e.id), log.map((e) => e.id));
        } finally {
          await ref.close();
        }
      } finally {
        await c.close();
        await second.kill();
      }
    });

    test("a tool call", async () => {
      const c = client([fabric.hub.base], tr);
      try {
        await c.connect();
        const updates: string[] = [];
        const call = c.callTool("add", { a: 2, b: 3 }, { onUpdate: (u) => updates.push(u.status) });
        const done = await call.done;
        assert.equal(done.status ?? "OK", "OK");
        assert.deepEqual(done.result, { result: 5 });
        assert.deepEqual(updates.slice(0, 2), ["QUEUED", "RUNNING"]);
      } finally {
        await c.close();
      }
    });

    test("cancel a run and a tool call", async () => {
      const c = client([fabric.hub.base], tr);
      try {
        await c.connect();
        const run = await c.sendText("stop me early");
        for await (const _ of run) {
          await run.cancel();
          break;
        }
        const res = await run.done;
        assert.equal(res.status, "CANCELLED");
        const call = c.callTool("sleep", { ms: 20_000 });
        await call.cancel("changed my mind");
        assert.equal((await call.done).status, "CANCELLED");
      } finally {
        await c.close();
      }
    });

    test("a token that expires during the session", async () => {
      // Refresh before expiry (4 s tokens): the client reconnects with a
      // fresh token before the edge would cut it. No refresh (tokens that
      // the edge cuts after 2 s, see token): the edge closes with 4002 and
      // the client comes back with a fresh token. Both keep the session
      // whole across three tokens.
      const cases = [
        { refreshBeforeExpiry: true, ttl: 4 },
        { refreshBeforeExpiry: false, ttl: -28 },
      ].map(async ({ refreshBeforeExpiry, ttl }) => {
        let minted = 0;
        const c = client([fabric.hub.base], tr, {
          refreshBeforeExpiry,
          token: () => {
            minted++;
            return token("alice", ttl);
          },
        });
        try {
          await c.connect();
          const log = logOf(c);
          let turn = 0;
          while (minted < 3) {
            const text = `turn ${turn++}`;
            const run = await c.sendText(text);
            assert.equal((await run.done).text, answer(text));
          }
          assertDense(log);
        } finally {
          await c.close();
        }
      });
      await Promise.all(cases);
    });

    test("audio: chunks up, the agent's echo down", async () => {
      const c = client([fabric.hub.base], tr);
      try {
        await c.connect();
        const got: Uint8Array[] = [];
        c.onAudio((a) => got.push(a.data));
        const utterance = crypto.randomUUID();
        const sent = [new Uint8Array([1, 2, 3, 250]), new Uint8Array([4, 5, 6])];
        for (const chunk of sent) c.sendAudio(chunk, { mime: "audio/wav", messageId: utterance });
        await until("the echo", () => got.length >= sent.length, 15_000);
        assert.deepEqual(got.map((a) => Array.from(a)), sent.map((a) => Array.from(a)));
      } finally {
        await c.close();
      }
    });

    test("flow control: a small window, and a pause", async () => {
      const c = client([fabric.hub.base], tr, { credit: 4 });
      try {
        await c.connect();
        const log = logOf(c);
        const run = await c.sendText("many words for a small window");
        assert.equal((await run.done).text, answer("many words for a small window"));
        assertDense(log);

        c.pause("AGENT");
        const n = log.length;
        const paused = await c.sendText("wait for it");
        await new Promise((r) => setTimeout(r, 600));
        assert.equal(log.length, n, "messages arrived while paused");
        c.resume("AGENT");
        assert.equal((await paused.done).text, answer("wait for it"));
        assertDense(log);
      } finally {
        await c.close();
      }
    });
  });
}

test("falls back to the next transport when one is blocked", async () => {
  // A WebSocket that never opens stands for a proxy that blocks upgrades.
  class Blocked extends EventTarget {
    onopen: unknown = null;
    onclose: ((ev: { code: number; reason: string }) => void) | null = null;
    onerror: (() => void) | null = null;
    onmessage: unknown = null;
    constructor() {
      super();
      setTimeout(() => {
        this.onerror?.();
        this.onclose?.({ code: 1006, reason: "" });
      }, 10);
    }
    send(): void {}
    close(): void {}
  }
  const c = new HaipClient({ urls: [fabric.hub.base], token: () => token("alice"), WebSocket: Blocked as unknown as typeof WebSocket });
  try {
    await c.connect();
    assert.equal(c.transport, "sse");
    const run = await c.sendText("over the fallback");
    assert.equal((await run.done).text, answer("over the fallback"));
  } finally {
    await c.close();
  }
});

  test("a token function that fails is asked again", async () => {
    let calls = 0;
    const errors: string[] = [];
    const c = client([fabric.hub.base], "websocket", {
      token: async () => {
        if (++calls === 1) throw new Error("token service down");
        return token("alice");
      },
    });
    c.onError((e) => errors.push(e.message));
    try {
      await c.connect();
      assert.equal(c.transport, "websocket", "a token failure moved the client off its transport");
      assert.deepEqual(errors, ["token: token service down"]);
    } finally {
      await c.close();
    }
  });

  test("a gap in the log is filled by REPLAY_REQUEST", async () => {
    // A WebSocket that loses one log message on the way in: the client
    // holds what comes after it and asks the edge to send it again.
    let dropped = 0;
    const Base = WebSocketImpl as unknown as new (url: string) => WebSocket;
    class Lossy extends Base {
      set onmessage(fn: ((ev: MessageEvent) => void) | null) {
        super.onmessage = (ev: MessageEvent) => {
          if (typeof ev.data === "string" && dropped === 0) {
            const e = JSON.parse(ev.data) as Envelope;
            if (e.type === "TEXT_MESSAGE_PART" && Number(e.seq) >= 5) {
              dropped = Number(e.seq);
              return;
            }
          }
          fn?.(ev);
        };
      }
      get onmessage(): ((ev: MessageEvent) => void) | null {
        return super.onmessage;
      }
    }
    const c = client([fabric.hub.base], "websocket", { WebSocket: Lossy as unknown as typeof WebSocket, gapWaitMs: 50 });
    try {
      await c.connect();
      const log = logOf(c);
      const run = await c.sendText("fill the gap");
      assert.equal((await run.done).text, answer("fill the gap"));
      assert.ok(dropped > 0, "nothing was dropped");
      assertDense(log);
    } finally {
      await c.close();
    }
  });

  test("the Node example", async () => {
    const script = fileURLToPath(new URL("../../examples/chat.mjs", import.meta.url));
    const out = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, [script, "from", "the", "example"], { env: { ...process.env, EDGE_URL: fabric.hub.base, TOKEN: token("example") }, timeout: 30_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
      ),
    );
    assert.ok(out.includes(answer("from the example")), out);
    assert.match(out, /\[run OK, session [0-9a-f-]{36}, last seq \d+\]/);
    assert.match(out, /add\(2, 3\) = \{ result: 5 \}/);
  });
});

export type { Edge };
