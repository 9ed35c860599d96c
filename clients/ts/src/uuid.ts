// uuids: random ones for ids, and the edge's name-based ones (run ids).

/** newUUID returns a random (version 4) uuid. */
export function newUUID(): string {
  const c = globalThis.crypto;
  if (typeof c?.randomUUID === "function") return c.randomUUID();
  const b = new Uint8Array(16);
  c.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  return format(b);
}

// NAMESPACE is the edge's name-uuid namespace (haip.NameSpace).
const NAMESPACE = new Uint8Array([0xea, 0x96, 0x20, 0x82, 0xbc, 0x85, 0x5f, 0xd7, 0xa2, 0xd7, 0x1c, 0x68, 0x90, 0x06, 0x64, 0x86]);

/**
 * nameUUID returns the edge's deterministic version-5 uuid of parts: SHA-1
 * of the namespace followed by each part as "<byte length>:<bytes>"
 * (haip.NameUUID). The run a user message starts is
 * nameUUID("run", session, message_id).
 */
export async function nameUUID(...parts: string[]): Promise<string> {
  const enc = new TextEncoder();
  const chunks: Uint8Array[] = [NAMESPACE];
  for (const p of parts) {
    const bytes = enc.encode(p);
    chunks.push(enc.encode(`${bytes.length}:`), bytes);
  }
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.length;
  }
  const sum = new Uint8Array(await globalThis.crypto.subtle.digest("SHA-1", all));
  const u = sum.slice(0, 16);
  u[6] = (u[6] & 0x0f) | 0x50;
  u[8] = (u[8] & 0x3f) | 0x80;
  return format(u);
}

function format(b: Uint8Array): string {
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
