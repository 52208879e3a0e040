/** Reading a request body with a size limit. */

/** The media type of a request's `Content-Type`, lowercased, without parameters ("" when absent). */
export function mediaType(request: Request): string {
  return (request.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
}

/** Returned by `readBody` when the body is larger than the limit. */
export const TOO_LARGE = Symbol("too large");

/**
 * Read a request body, stopping as soon as it exceeds `maxBytes` (a `Content-Length`
 * above the limit is refused before reading anything).
 * @param maxBytes limit in bytes
 * @returns the bytes (`null` when there is no body), or `TOO_LARGE`
 */
export async function readBody(request: Request, maxBytes: number): Promise<Uint8Array<ArrayBuffer> | null | typeof TOO_LARGE> {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > maxBytes) return TOO_LARGE;
  if (!request.body) return null;
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel();
      return TOO_LARGE;
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}
