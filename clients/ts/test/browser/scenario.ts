// The client in a real browser (driven by clients/ts/ts_test.go): on one
// transport, a tool call, a streamed answer whose edge the test kills in
// the middle (state "cut"), a cancel, and a session over tokens the edge
// cuts when they expire. The page reports into window.haip.

import { type Envelope, HaipClient, LocalStorageStore } from "../../src/index.js";
import type { TransportName } from "../../src/index.js";
import { answer, isLogMessage } from "../shared.js";

interface Report {
  state: "running" | "cut" | "done" | "failed";
  error?: string;
  result?: Record<string, unknown>;
}

const report: Report = { state: "running" };
(window as unknown as { haip: Report }).haip = report;

const q = new URLSearchParams(location.search);
const tr = q.get("transport") as TransportName;
const urls = (q.get("urls") ?? "").split(",");

// tokens come from the page's server, which mints them: ttl in seconds
// (a negative one down to -30 is one the edge still takes, and cuts
// 30 + ttl seconds later).
const tokenFor = async (ttl: number): Promise<string> => (await fetch(`/token?ttl=${ttl}`)).text();

function logOf(c: HaipClient): Envelope[] {
  const log: Envelope[] = [];
  c.onEnvelope((e) => {
    if (isLogMessage(e, log.length)) log.push(e);
  });
  return log;
}

async function main(): Promise<Record<string, unknown>> {
  const r: Record<string, unknown> = {};
  const store = new LocalStorageStore("haip.test.");
  const c = new HaipClient({ urls, transports: [tr], token: () => tokenFor(3600), store, backoff: { initialMs: 50, maxMs: 500 } });
  const log = logOf(c);
  await c.connect();
  r.transport = c.transport;
  r.tool = (await c.callTool("add", { a: 2, b: 3 }).done).result;

  const run = await c.sendText("browser cut");
  const chunks: string[] = [];
  for await (const chunk of run) {
    chunks.push(chunk);
    if (chunks.length === 4) report.state = "cut"; // the test kills the first edge now
  }
  const res = await run.done;
  r.cut = {
    text: res.text,
    want: answer("browser cut"),
    chunks: chunks.join(""),
    url: c.url,
    seqs: log.map((e) => Number(e.seq)),
    lastSeq: c.lastSeq,
    stored: store.load(c.session),
  };

  const stop = await c.sendText("cancel me");
  for await (const _ of stop) {
    await stop.cancel();
    break;
  }
  r.cancel = (await stop.done).status;
  await c.close();

  let minted = 0;
  const e = new HaipClient({
    urls: [urls[urls.length - 1]],
    transports: [tr],
    refreshBeforeExpiry: false,
    backoff: { initialMs: 50, maxMs: 500 },
    token: () => {
      minted++;
      return tokenFor(-28);
    },
  });
  const elog = logOf(e);
  await e.connect();
  const turns: [string, string][] = [];
  for (let turn = 0; minted < 3; turn++) {
    const text = `turn ${turn}`;
    const run = await e.sendText(text);
    turns.push([(await run.done).text, answer(text)]);
  }
  await e.close();
  r.expiry = { minted, turns, seqs: elog.map((x) => Number(x.seq)) };
  return r;
}

main().then(
  (result) => {
    report.result = result;
    report.state = "done";
  },
  (e: unknown) => {
    report.error = e instanceof Error ? `${e.message}\n${e.stack}` : String(e);
    report.state = "failed";
  },
);
