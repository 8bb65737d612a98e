/**
 * The token out of `Authorization: Bearer <token>` (RFC 6750 §2.1), strictly.
 *
 * The scheme name is case-insensitive (RFC 7235 §2.1): `bearer x` is `Bearer x`. Exactly one
 * header: Node keeps only the first of two `Authorization` headers in `req.headers`, so callers
 * with raw headers pass every value; the Fetch API joins repeated headers with ", ", and a comma
 * can never occur in a bearer token, so a joined value is refused the same way.
 */
import { MAX_TOKEN_BYTES } from './compact.js';
import { VerifierError } from './errors.js';

/** RFC 7235 token68, the syntax of a bearer credential. */
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;
/** Room for "Bearer " and surrounding whitespace around the largest token. */
const MAX_SCHEME_SLACK = 64;
const SCHEME = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+)(?: +(.*))?$/s;

/** Returns the bearer token, or throws VerifierError (missing_token, invalid_scheme, multiple_authorization, malformed_token). */
export function bearerToken(authorization: string | readonly string[] | null | undefined): string {
  const values =
    authorization === null || authorization === undefined ? [] : typeof authorization === 'string' ? [authorization] : authorization;
  if (values.length === 0) throw new VerifierError('missing_token', 'no Authorization header');
  if (values.length > 1) throw new VerifierError('multiple_authorization', 'more than one Authorization header');
  // Before any pattern runs over it: a megabyte of header is refused by its length alone.
  if (values[0]!.length > MAX_TOKEN_BYTES + MAX_SCHEME_SLACK)
    throw new VerifierError('token_too_large', `token over ${MAX_TOKEN_BYTES} bytes`);
  const value = values[0]!.trim();
  if (value === '') throw new VerifierError('missing_token', 'empty Authorization header');
  if (value.includes(',')) throw new VerifierError('multiple_authorization', 'more than one credential in Authorization');
  const m = SCHEME.exec(value);
  if (!m) throw new VerifierError('invalid_scheme', 'Authorization is not a scheme and a credential');
  if (m[1]!.toLowerCase() !== 'bearer') throw new VerifierError('invalid_scheme', 'Authorization scheme is not Bearer');
  const token = (m[2] ?? '').trim();
  if (token === '') throw new VerifierError('missing_token', 'Bearer without a token');
  if (!TOKEN68.test(token)) throw new VerifierError('malformed_token', 'bearer credential is not token68');
  return token;
}
