/**
 * The verifier's structural checks on a compact JWS, done before any key lookup or signature
 * check: the token profile's one parser (src/token-profile.ts: size, canonical base64url, JSON
 * objects without repeated names, `alg`, forbidden headers), then the two header rules of an
 * access token, `typ` and `kid`. Its refusals become VerifierErrors here.
 */
import { ACCESS_TOKEN_TYP, parseCompact, type TokenProfileCode, TokenProfileError, type TokenType, tokenTypeOf } from '../token-profile.js';
import { VerifierError, type VerifierErrorCode } from './errors.js';

// The profile's constants, under the names the verifier has always exported (index.ts, limits.ts).
export { ALGORITHMS, FORBIDDEN_HEADERS, MAX_TOKEN_BYTES } from '../token-profile.js';
export const TOKEN_TYP = ACCESS_TOKEN_TYP;

export interface ProtectedHeader {
  alg: string;
  kid: string;
  typ?: string;
  [name: string]: unknown;
}

const CODES: Record<TokenProfileCode, VerifierErrorCode> = {
  too_large: 'token_too_large',
  malformed: 'malformed_token',
  duplicate_member: 'duplicate_member',
  // An empty signature is not a signature segment: malformed, before anything looks at alg.
  unsecured: 'malformed_token',
  unsupported_alg: 'unsupported_alg',
  forbidden_header: 'forbidden_header',
};

/** The verifier's code for a refusal of the token profile's parser. */
export function verifierErrorOf(e: TokenProfileError): VerifierError {
  const code = CODES[e.code];
  return new VerifierError(code, code === 'malformed_token' ? `malformed token: ${e.message}` : e.message);
}

/**
 * Checks a compact JWS's shape and protected header; returns the header. The claims set is only
 * checked for shape (a JSON object without repeated names): its values are jose's to check, after
 * the signature. `typ` is an access token's unless a caller says otherwise (credctl token inspect
 * verifies egress sentinels too).
 */
export function checkCompact(token: string, typ: TokenType = ACCESS_TOKEN_TYP): ProtectedHeader {
  let header: Record<string, unknown>;
  try {
    ({ header } = parseCompact(token));
  } catch (e) {
    throw e instanceof TokenProfileError ? verifierErrorOf(e) : e;
  }
  if (tokenTypeOf(header.typ) !== typ) throw new VerifierError('invalid_typ', `typ is not ${typ}`);
  if (typeof header.kid !== 'string' || header.kid === '') throw new VerifierError('missing_kid', 'no kid in the header');
  return header as ProtectedHeader;
}
