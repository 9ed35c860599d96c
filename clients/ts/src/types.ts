// HAIP 1.1.2 envelopes and payloads, as the edge accepts and sends them.
// The published JSON Schemas (GET /haip/schema/envelope.json and
// /haip/schema/payloads/<TYPE>.json on an edge, haip/schema/ in the
// repository) are the reference: schema.gen.ts is generated from them, and
// the checks at the end of this file make the build fail if these types
// disagree with it.

import type { SchemaChannel, SchemaEventType, SchemaPayloads } from "./schema.gen.js";

/** A uuid (versions 1–5, RFC 4122 variant), as a string. */
export type UUID = string;
/** An unsigned 64-bit decimal in a string ("uint64str"). */
export type U64 = string;

/** The five standard channels. */
export type Channel = "USER" | "AGENT" | "SYSTEM" | "AUDIO_IN" | "AUDIO_OUT";
export const CHANNELS: readonly Channel[] = ["USER", "AGENT", "SYSTEM", "AUDIO_IN", "AUDIO_OUT"];

export interface FlowControlCaps {
  initial_credit_messages?: number;
  initial_credit_bytes?: number;
  [extra: string]: unknown;
}

export interface Capabilities {
  binary_frames?: boolean;
  flow_control?: FlowControlCaps;
  max_concurrent_runs?: number;
  signed_envelopes?: boolean;
  [extra: string]: unknown;
}

export interface HaiPayload {
  haip_version: string;
  accept_major: number[];
  accept_events: EventType[];
  capabilities?: Capabilities;
  binary_frames?: boolean;
  max_concurrent_runs?: number;
  last_rx_seq?: U64;
}
export type RunStartedPayload = Record<string, unknown>;
export interface RunFinishedPayload {
  status?: "OK" | "CANCELLED" | "ERROR";
  summary?: string;
}
export interface RunCancelPayload {
  run_id: UUID;
}
export interface ErrorPayload {
  code: string;
  message: string;
  related_id?: UUID;
  detail?: Record<string, unknown>;
}
export interface PingPayload {
  nonce?: string;
}
export interface ReplayRequestPayload {
  from_seq: U64;
  to_seq?: U64;
}
export interface TextMessageStartPayload {
  message_id: UUID;
  author?: string;
  text?: string;
}
export interface TextMessagePartPayload {
  message_id: UUID;
  text: string;
}
export interface TextMessageEndPayload {
  message_id: UUID;
  tokens?: U64;
}
export interface AudioChunkPayload {
  message_id: UUID;
  mime: string;
  data?: string;
  duration_ms?: U64;
}
export interface ToolCallPayload {
  call_id: UUID;
  tool: string;
  params?: Record<string, unknown>;
}
export interface ToolUpdatePayload {
  call_id: UUID;
  status: "QUEUED" | "RUNNING" | "CANCELLING";
  progress?: number;
  partial?: unknown;
}
export interface ToolDonePayload {
  call_id: UUID;
  status?: "OK" | "CANCELLED" | "ERROR";
  result?: unknown;
}
export interface ToolCancelPayload {
  call_id: UUID;
  reason?: string;
}
export interface ToolListPayload {
  tools: { name: string; description?: string }[];
}
export interface ToolSchemaPayload {
  tool: string;
  schema: Record<string, unknown>;
}
export interface FlowUpdatePayload {
  channel: string;
  add_messages?: number;
  add_bytes?: number;
}
export interface ChannelControlPayload {
  channel: string;
}

/** Each event type's payload. */
export interface PayloadMap {
  HAI: HaiPayload;
  RUN_STARTED: RunStartedPayload;
  RUN_FINISHED: RunFinishedPayload;
  RUN_CANCEL: RunCancelPayload;
  RUN_ERROR: ErrorPayload;
  PING: PingPayload;
  PONG: PingPayload;
  REPLAY_REQUEST: ReplayRequestPayload;
  TEXT_MESSAGE_START: TextMessageStartPayload;
  TEXT_MESSAGE_PART: TextMessagePartPayload;
  TEXT_MESSAGE_END: TextMessageEndPayload;
  AUDIO_CHUNK: AudioChunkPayload;
  TOOL_CALL: ToolCallPayload;
  TOOL_UPDATE: ToolUpdatePayload;
  TOOL_DONE: ToolDonePayload;
  TOOL_CANCEL: ToolCancelPayload;
  TOOL_LIST: ToolListPayload;
  TOOL_SCHEMA: ToolSchemaPayload;
  ERROR: ErrorPayload;
  FLOW_UPDATE: FlowUpdatePayload;
  PAUSE_CHANNEL: ChannelControlPayload;
  RESUME_CHANNEL: ChannelControlPayload;
}

/** The 22 event types. */
export type EventType = keyof PayloadMap;
export const EVENT_TYPES: readonly EventType[] = [
  "HAI", "RUN_STARTED", "RUN_FINISHED", "RUN_CANCEL", "RUN_ERROR", "PING", "PONG", "REPLAY_REQUEST",
  "TEXT_MESSAGE_START", "TEXT_MESSAGE_PART", "TEXT_MESSAGE_END", "AUDIO_CHUNK", "TOOL_CALL", "TOOL_UPDATE",
  "TOOL_DONE", "TOOL_CANCEL", "TOOL_LIST", "TOOL_SCHEMA", "ERROR", "FLOW_UPDATE", "PAUSE_CHANNEL", "RESUME_CHANNEL",
];

/** The fields every envelope has, whatever its type. */
export interface EnvelopeBase {
  id: UUID;
  session: UUID;
  seq: U64;
  ts: U64;
  channel: Channel;
  ack?: U64;
  pv?: number;
  crit?: boolean;
  bin_len?: number;
  bin_mime?: string;
  run_id?: UUID;
  thread_id?: string;
}

/** One envelope of type T. */
export type EnvelopeOf<T extends EventType> = EnvelopeBase & { type: T; payload: PayloadMap[T] };

/** Any envelope: a union discriminated by `type`. */
export type Envelope = { [T in EventType]: EnvelopeOf<T> }[EventType];

/**
 * Control types are connection-scoped: the edge sends them outside the
 * session log and stamps them with the seq of the last log message
 * delivered (they take no number of their own). A client must never drop
 * one by the "seq not above the last" rule, and must not move its resume
 * position with one.
 */
export const CONTROL_TYPES: ReadonlySet<EventType> = new Set<EventType>([
  "HAI", "PING", "PONG", "ERROR", "FLOW_UPDATE", "PAUSE_CHANNEL", "RESUME_CHANNEL", "REPLAY_REQUEST",
]);

/** Whether t is a connection-scoped control type (see CONTROL_TYPES). */
export function isControl(t: EventType): boolean {
  return CONTROL_TYPES.has(t);
}

const uuidRe = /^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[1-5][0-9A-Fa-f]{3}-[89ABab][0-9A-Fa-f]{3}-[0-9A-Fa-f]{12}$/;
const u64Re = /^[0-9]{1,20}$/;
const channelRe = /^[A-Za-z0-9_\-]{1,128}$/;
const eventTypes = new Set<string>(EVENT_TYPES);

/**
 * parseEnvelope decodes one envelope and checks its frame: the required
 * fields and their forms. Payloads are the edge's (already checked
 * there); an envelope that fails is an Error.
 */
export function parseEnvelope(text: string): Envelope {
  const v = JSON.parse(text) as Record<string, unknown>;
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error("envelope is not a JSON object");
  const str = (k: string, re: RegExp): void => {
    if (typeof v[k] !== "string" || !re.test(v[k] as string)) throw new Error(`envelope field ${k} is missing or malformed`);
  };
  str("id", uuidRe);
  str("session", uuidRe);
  str("seq", u64Re);
  str("ts", u64Re);
  str("channel", channelRe);
  if (typeof v.type !== "string" || !eventTypes.has(v.type)) throw new Error(`unknown event type ${String(v.type)}`);
  if (v.payload === null || typeof v.payload !== "object" || Array.isArray(v.payload)) throw new Error("envelope payload is not an object");
  return v as unknown as Envelope;
}

// ---- checked against the published schemas (schema.gen.ts) ----

type StrKeys<T> = Extract<keyof T, string>;
type RequiredKeys<T> = { [K in StrKeys<T>]-?: Record<string, never> extends Pick<T, K> ? never : K }[StrKeys<T>];
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Agrees<T extends EventType> = SchemaPayloads[T]["open"] extends true
  ? true
  : Same<RequiredKeys<PayloadMap[T]>, SchemaPayloads[T]["required"]> extends true
    ? [StrKeys<PayloadMap[T]>] extends [SchemaPayloads[T]["fields"]]
      ? true
      : false
    : false;

/**
 * schemaAgreement does not compile unless every payload type above has
 * the published schema's required fields, and no field it lacks, and the
 * event types and channels are the schema's.
 */
export const schemaAgreement: { [T in EventType]: Agrees<T> } & { types: Same<EventType, SchemaEventType>; channels: Same<Channel, SchemaChannel> } = {
  HAI: true, RUN_STARTED: true, RUN_FINISHED: true, RUN_CANCEL: true, RUN_ERROR: true, PING: true, PONG: true,
  REPLAY_REQUEST: true, TEXT_MESSAGE_START: true, TEXT_MESSAGE_PART: true, TEXT_MESSAGE_END: true, AUDIO_CHUNK: true,
  TOOL_CALL: true, TOOL_UPDATE: true, TOOL_DONE: true, TOOL_CANCEL: true, TOOL_LIST: true, TOOL_SCHEMA: true,
  ERROR: true, FLOW_UPDATE: true, PAUSE_CHANNEL: true, RESUME_CHANNEL: true, types: true, channels: true,
};
