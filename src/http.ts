/**
 * Reading request bodies with a hard size limit, whether or not Content-Length is declared.
 */
import { IssuerError } from './issuer/errors.js';

export async function readBodyLimited(req: Request, limit: number): Promise<string> {
  const tooLarge = () => new IssuerError('payload_too_large', `the request body must be at most ${limit} bytes`);
  const declared = req.headers.get('Content-Length');
  if (declared !== null && Number(declared) > limit) throw tooLarge();
  if (!req.body) return '';
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => undefined);
      throw tooLarge();
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
    throw new IssuerError('invalid_request', 'the request body is not valid UTF-8');
  }
}
