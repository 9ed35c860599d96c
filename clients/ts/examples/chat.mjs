// A HAIP chat from Node: node examples/chat.mjs "hello there"
// EDGE_URL (default http://127.0.0.1:8080, a comma-separated list for several edges) and TOKEN (a
// user token, as `go run ./cmd/edge` prints) say where and who. Build first: npm run build.
import { HaipClient } from "../dist/index.js";

const urls = (process.env.EDGE_URL ?? "http://127.0.0.1:8080").split(",");
// Node 22 has a WebSocket; on Node 20 use the ws package (npm install ws), or the SSE transport.
const WebSocket = globalThis.WebSocket ?? (await import("ws").then((m) => m.default, () => undefined));
const client = new HaipClient({
  urls,
  token: () => process.env.TOKEN, // called on every reconnect: return a fresh token here
  transports: WebSocket ? ["websocket", "sse", "stream"] : ["sse", "stream"],
  WebSocket,
});
client.onStatus((s) => console.error(`[${s}${client.transport ? ` over ${client.transport}` : ""}]`));
await client.connect();

const run = await client.sendText(process.argv.slice(2).join(" ") || "hello");
for await (const chunk of run) process.stdout.write(chunk);
const result = await run.done;
console.log(`\n[run ${result.status}, session ${client.session}, last seq ${client.lastSeq}]`);

const call = client.callTool("add", { a: 2, b: 3 }, { onUpdate: (u) => console.error(`[tool ${u.status}]`) });
console.log("add(2, 3) =", (await call.done).result);
await client.close();
