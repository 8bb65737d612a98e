/**
 * Reading an HTTP body with a hard size limit, whether or not Content-Length is declared: the
 * stream is cancelled as soon as the limit is passed, so an oversized body is never buffered.
 * Web standards only (streams, TextDecoder): the Worker reads requests with it, the isomorphic
 * verifier JWKS responses.
 */

/** The body (as declared, or as read) is over the limit. */
export class BodyTooLarge extends Error {
  override name = 'BodyTooLarge';
  constructor(readonly limit: number) {
    super(`body over ${limit} bytes`);
  }
}

/** The body is not valid UTF-8. */
export class BodyNotUtf8 extends Error {
  override name = 'BodyNotUtf8';
  constructor() {
    super('body is not valid UTF-8');
  }
}

/** Strict UTF-8 of a body of at most `limit` bytes; `contentLength` is the declared header, if any. */
export async function readBoundedText(
  body: ReadableStream<Uint8Array> | null,
  contentLength: string | null,
  limit: number,
): Promise<string> {
  if (contentLength !== null && Number(contentLength) > limit) throw new BodyTooLarge(limit);
  if (!body) return '';
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => undefined);
      throw new BodyTooLarge(limit);
    }
    chunks.push(value);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.byteLength;
  }
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(all);
  } catch {
    throw new BodyNotUtf8();
  }
}
