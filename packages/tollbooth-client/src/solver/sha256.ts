/**
 * SHA-256 compression pieces (FIPS 180-4 §6.2) on 32-bit words, for the proof-of-work solver:
 * the midstate over a salt's full blocks, the per-batch precomputation (rounds and schedule
 * words that do not depend on the nonce's last digits), and the portable JS kernel.
 * Words are big-endian message words held in `Int32Array`s (values are the same bits as
 * the spec's unsigned words; compare with `>>> 0`).
 */

/** Round constants K[0..63] (FIPS 180-4 §4.2.2). */
export const K = Int32Array.from([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be,
  0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa,
  0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85,
  0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
  0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f,
  0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** Initial hash value H(0) (FIPS 180-4 §5.3.3). */
export const IV = Int32Array.from([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);

/**
 * Expand message schedule words `w[from..to-1]` (from ≥ 16) from the words before them:
 * W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16].
 * @param w 64 words; `w[0..from-1]` must be set
 */
export function expand(w: Int32Array, from: number, to: number): void {
  for (let t = from; t < to; t++) {
    const x = w[t - 2]!;
    const y = w[t - 15]!;
    const s1 = ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10);
    const s0 = ((y >>> 7) | (y << 25)) ^ ((y >>> 18) | (y << 14)) ^ (y >>> 3);
    w[t] = (s1 + w[t - 7]! + s0 + w[t - 16]!) | 0;
  }
}

/**
 * Run rounds `from..to-1` on working variables `s` = [a, b, c, d, e, f, g, h], in place.
 * @param w schedule words; `w[from..to-1]` must be set
 */
export function rounds(s: Int32Array, w: Int32Array, from: number, to: number): void {
  let a = s[0]!,
    b = s[1]!,
    c = s[2]!,
    d = s[3]!,
    e = s[4]!,
    f = s[5]!,
    g = s[6]!,
    h = s[7]!;
  for (let t = from; t < to; t++) {
    const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + s1 + (g ^ (e & (f ^ g))) + K[t]! + w[t]!) | 0;
    const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (s0 + ((a & b) | (c & (a | b)))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  s[0] = a;
  s[1] = b;
  s[2] = c;
  s[3] = d;
  s[4] = e;
  s[5] = f;
  s[6] = g;
  s[7] = h;
}

/**
 * Compress one 64-byte block into the chaining state `h` (8 words), in place.
 * @param bytes the message; the block is `bytes[offset..offset+63]`
 * @param w scratch, 64 words
 */
export function compressBlock(h: Int32Array, bytes: Uint8Array, offset: number, w: Int32Array): void {
  for (let i = 0; i < 16; i++) {
    const o = offset + 4 * i;
    w[i] = (bytes[o]! << 24) | (bytes[o + 1]! << 16) | (bytes[o + 2]! << 8) | bytes[o + 3]!;
  }
  expand(w, 16, 64);
  const s = h.slice();
  rounds(s, w, 0, 64);
  for (let i = 0; i < 8; i++) h[i] = (h[i]! + s[i]!) | 0;
}

/** Big-endian bytes of 8 digest words. @returns 32 bytes */
export function digestBytes(words: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(32);
  for (let i = 0; i < 8; i++) {
    const v = words[i]!;
    out[4 * i] = v >>> 24;
    out[4 * i + 1] = v >>> 16;
    out[4 * i + 2] = v >>> 8;
    out[4 * i + 3] = v;
  }
  return out;
}
