// Real edges for the tests: the edge binary built from this checkout
// (HAIP_EDGE_BIN, or `go build ./cmd/edge` here), one "hub" edge with the
// embedded nats-server, the demo agent and the built-in tools, and more
// edges on the same NATS that a test may kill.

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import WS from "ws";

import type { WebSocketCtor } from "../src/index.js";

/**
 * WebSocketImpl is Node's own WebSocket where it has one (Node 22+, or 20
 * with --experimental-websocket), else the ws package's: the client takes
 * either.
 */
export const WebSocketImpl: WebSocketCtor = (globalThis as { WebSocket?: WebSocketCtor }).WebSocket ?? (WS as unknown as WebSocketCtor);

const repoRoot = fileURLToPath(new URL("../../../../", import.meta.url)); // build/test → clients/ts → repo

export const SECRET = "ts-client-tests-secret-0123456789abcdef";

/** An edge process. */
export interface Edge {
  base: string;
  proc: ChildProcess;
  /** kill ends the process at once (SIGKILL): its connections are cut. */
  kill(): Promise<void>;
}

/** Fabric is a hub edge (NATS, agent, tools) and the edges added to it. */
export class Fabric {
  private dir = mkdtempSync(join(tmpdir(), "haip-ts-"));
  private edges: Edge[] = [];
  private natsPort = 0;
  private bin = "";
  hub!: Edge;

  async start(): Promise<void> {
    this.bin = process.env.HAIP_EDGE_BIN ?? "";
    if (!this.bin) {
      this.bin = join(this.dir, "edge");
      execFileSync("go", ["build", "-o", this.bin, "./cmd/edge"], { cwd: repoRoot, stdio: "inherit" });
    }
    this.natsPort = await freePort();
    this.hub = await this.spawn("hub", {
      NATS_LISTEN: `127.0.0.1:${this.natsPort}`,
      DEMO_AGENT: "true",
      DEMO_AGENT_DELAY: "20ms",
      BUILTIN_TOOLS: "true",
    });
  }

  /** edge starts another edge on the hub's NATS (no agent, no tools). */
  edge(name: string): Promise<Edge> {
    return this.spawn(name, { NATS_URL: `nats://127.0.0.1:${this.natsPort}`, DEMO_AGENT: "false", BUILTIN_TOOLS: "false" });
  }

  private spawn(name: string, env: Record<string, string>): Promise<Edge> {
    const proc = spawn(this.bin, [], {
      env: {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? "",
        HOST: "127.0.0.1",
        PORT: "0",
        DATA_DIR: join(this.dir, name),
        JWT_SECRET: SECRET,
        LOG_LEVEL: process.env.HAIP_TEST_LOG ? "debug" : "warn",
        SHUTDOWN_TIMEOUT: "2s",
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let err = "";
    proc.stderr!.on("data", (b: Buffer) => {
      err = (err + b.toString()).slice(-4000);
      if (process.env.HAIP_TEST_LOG) process.stderr.write(`[${name}] ${b}`);
    });
    return new Promise((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => reject(new Error(`edge ${name} did not start within 20 s: ${err}`)), 20_000);
      proc.on("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`edge ${name} exited (${code}): ${err}`));
      });
      proc.stdout!.on("data", (b: Buffer) => {
        out += b.toString();
        const m = /HAIP edge listening on (http:\/\/\S+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          const e: Edge = {
            base: m[1],
            proc,
            kill: () =>
              new Promise((res) => {
                if (proc.exitCode !== null || proc.signalCode !== null) return res();
                proc.once("exit", () => res());
                proc.kill("SIGKILL");
              }),
          };
          this.edges.push(e);
          resolve(e);
        }
      });
    });
  }

  async stop(): Promise<void> {
    // The hub last: the others use its NATS.
    for (const e of this.edges.reverse()) {
      if (e.proc.exitCode !== null || e.proc.signalCode !== null) continue;
      await new Promise<void>((res) => {
        const t = setTimeout(() => e.proc.kill("SIGKILL"), 5000);
        e.proc.once("exit", () => {
          clearTimeout(t);
          res();
        });
        e.proc.kill("SIGTERM");
      });
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * token mints an HS256 user token for sub whose exp is ttlSeconds from
 * now. The edge allows 30 s of clock skew past exp: a negative ttl above
 * -30 makes a token the edge accepts and cuts (close 4002) 30 + ttl
 * seconds later.
 */
export function token(sub: string, ttlSeconds = 3600): string {
  const now = Math.floor(Date.now() / 1000);
  const iat = Math.min(now, now + ttlSeconds - 10);
  const b64 = (v: object | string): string => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({ sub, role: "user", iat, nbf: iat, exp: now + ttlSeconds });
  const sig = createHmac("sha256", SECRET).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** until waits for cond, polling, within ms. */
export async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
