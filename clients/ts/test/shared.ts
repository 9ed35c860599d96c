// What the tests in Node and in the browser share (no Node modules here).

import { type Envelope, isControl } from "../src/index.js";

/** answer is the demo agent's answer to text (worker/demo.Answer). */
export function answer(text: string): string {
  return (
    `Hello from the demo agent. You said: ${JSON.stringify(text)}. ` +
    "Each word of this answer is stored in JetStream before you see it, " +
    "so if you drop now and resume from your last seq you get exactly the rest."
  );
}

/**
 * isLogMessage tells a session-log message from a connection-scoped one,
 * given how many log messages came before: the client's own rule
 * (types.ts, CONTROL_TYPES).
 */
export function isLogMessage(e: Pick<Envelope, "type" | "seq">, logged: number): boolean {
  return !isControl(e.type) && !((e.type === "TOOL_LIST" || e.type === "TOOL_SCHEMA") && Number(e.seq) <= logged);
}
