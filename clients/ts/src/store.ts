// Where a client keeps its position (the last session-log seq it
// received), so that a reload or a new process resumes exactly.

/** PositionStore keeps the last seq received per session. */
export interface PositionStore {
  /** load returns the last seq saved for session, if any. */
  load(session: string): number | undefined | Promise<number | undefined>;
  /** save records seq as the last received for session. It is called for every message: keep it cheap. */
  save(session: string, seq: number): void;
}

/** MemoryStore keeps positions for the life of the process or page. */
export class MemoryStore implements PositionStore {
  private readonly seqs = new Map<string, number>();
  load(session: string): number | undefined {
    return this.seqs.get(session);
  }
  save(session: string, seq: number): void {
    this.seqs.set(session, seq);
  }
}

/** The part of the Web Storage API LocalStorageStore uses. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/**
 * LocalStorageStore keeps positions in a browser's localStorage (or any
 * StorageLike), under prefix + session, so a reloaded page resumes where
 * it was.
 */
export class LocalStorageStore implements PositionStore {
  private readonly storage: StorageLike;
  constructor(private readonly prefix = "haip.seq.", storage?: StorageLike) {
    const s = storage ?? (globalThis as { localStorage?: StorageLike }).localStorage;
    if (!s) throw new Error("LocalStorageStore: no localStorage here; pass a StorageLike");
    this.storage = s;
  }
  load(session: string): number | undefined {
    const v = this.storage.getItem(this.prefix + session);
    if (v === null || !/^[0-9]{1,16}$/.test(v)) return undefined;
    return Number(v);
  }
  save(session: string, seq: number): void {
    this.storage.setItem(this.prefix + session, String(seq));
  }
}
