// @haipfabric/client: a TypeScript client for haipfabric edges (HAIP 1.1.2).
// Start with HaipClient (client.ts); README.md in the repository root,
// section "Use it from TypeScript", shows the whole API.

export * from "./types.js";
export * from "./store.js";
export { HaipClient, HaipError, jwtExpiry } from "./client.js";
export type { ClientOptions, RunHandle, RunResult, ToolCall, AudioChunk, Status, TokenSource } from "./client.js";
export { CloseCode, HTTPError, TRANSPORTS, endpoint } from "./transports.js";
export type { TransportName, CloseInfo, WebSocketCtor } from "./transports.js";
export { newUUID, nameUUID } from "./uuid.js";
