/**
 * Reading request bodies with a hard size limit, whether or not Content-Length is declared.
 */
import { BodyNotUtf8, BodyTooLarge, readBoundedText } from './bounded-body.js';
import { IssuerError } from './issuer/errors.js';

export async function readBodyLimited(req: Request, limit: number): Promise<string> {
  try {
    return await readBoundedText(req.body, req.headers.get('Content-Length'), limit);
  } catch (e) {
    if (e instanceof BodyTooLarge) throw new IssuerError('payload_too_large', `the request body must be at most ${limit} bytes`);
    if (e instanceof BodyNotUtf8) throw new IssuerError('invalid_request', 'the request body is not valid UTF-8');
    throw e;
  }
}
