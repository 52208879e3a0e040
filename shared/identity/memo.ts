/** Small helpers of the identity strategies: a bounded expiring memo and SHA-256. */
import { toHex, utf8 } from "../wire/encoding.ts";

/**
 * A map with a size bound and per-entry expiry, for per-isolate memos: at `max` entries
 * the oldest inserted is dropped; an entry read at or after its expiry is gone.
 */
export class BoundedMemo<V> {
  private readonly entries = new Map<string, { value: V; expiresAt: number }>();
  private readonly max: number;
  /** @param max most entries held */
  constructor(max: number) {
    this.max = max;
  }

  /** The value under `key` if it has not expired at `now` (ms since the epoch). */
  get(key: string, now: number): V | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (now >= entry.expiresAt) {
      this.entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  /** Remember `value` under `key` until `expiresAt` (ms since the epoch). */
  set(key: string, value: V, expiresAt: number): void {
    this.entries.delete(key);
    if (this.entries.size >= this.max) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, { value, expiresAt });
  }

  /** Entries held (expired ones included until read or pushed out). */
  get size(): number {
    return this.entries.size;
  }
}

/** SHA-256 of the UTF-8 bytes of `text` (WebCrypto). */
export async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", utf8(text)));
}

/** The first `bytes` bytes of `digest`, lowercase hex. */
export function toHexPrefix(digest: Uint8Array, bytes: number): string {
  return toHex(digest.subarray(0, bytes));
}
