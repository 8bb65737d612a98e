/**
 * The verifier's typed error: one class, one stable `code` per rule.
 *
 * Callers switch on `code`; the proxy and the Hono middleware put it in
 * `WWW-Authenticate: Bearer error="invalid_token", error_description="<code>"`. Messages are for
 * operators and never contain the token, a claim value or key material.
 */

export type VerifierErrorCode =
  /** No `Authorization` header, or a Bearer scheme with no token after it. */
  | 'missing_token'
  /** An `Authorization` scheme other than Bearer (Basic, Token, ...). */
  | 'invalid_scheme'
  /** More than one `Authorization` header (or one value holding two, joined by a comma). */
  | 'multiple_authorization'
  /** Over MAX_TOKEN_BYTES. The rules from here to `forbidden_header` are the token profile's parser (src/token-profile.ts). */
  | 'token_too_large'
  /** Not three canonical base64url segments, a header or claims set that is not a JSON object (UTF-8, no BOM), or an empty signature (an unsecured JWS). */
  | 'malformed_token'
  /** A member name appears twice in the header or the claims set (parsers disagree on which wins). */
  | 'duplicate_member'
  /** `alg` other than EdDSA or Ed25519. */
  | 'unsupported_alg'
  /** `jwk`, `jku`, `x5u`, `x5c`, `x5t`, `x5t#S256`, `crit`, `b64` or `zip` in the header. */
  | 'forbidden_header'
  /** `typ` is not `at+jwt` (RFC 9068), compared case-insensitively with or without `application/`. */
  | 'invalid_typ'
  /** No `kid` in the header. */
  | 'missing_kid'
  /** `kid` not in the JWKS, even after a refetch (or while the refetch cooldown runs). */
  | 'unknown_kid'
  | 'bad_signature'
  /** `exp` (plus the clock skew) is past. */
  | 'expired'
  /** `nbf` is ahead of now by more than the clock skew. */
  | 'not_yet_valid'
  /** `iat` is ahead of now by more than the clock skew. */
  | 'iat_in_future'
  | 'exp_missing'
  | 'iat_missing'
  | 'sub_missing'
  | 'jti_missing'
  /** A registered claim of the wrong type (`nbf` not a finite number, `iss` not a string). */
  | 'invalid_claim'
  | 'bad_issuer'
  /** `aud` is not exactly the expected audience as a single string (arrays are refused). */
  | 'bad_audience'
  /** No usable JWKS: never fetched, or the last good one is older than the stale limit. */
  | 'jwks_unavailable';

export class VerifierError extends Error {
  readonly code: VerifierErrorCode;

  constructor(code: VerifierErrorCode, message: string = code) {
    super(message);
    this.name = 'VerifierError';
    this.code = code;
  }
}

/**
 * The HTTP status for a code: 401 for anything about the request, 503 only when the verifier has
 * no keys to check with (a fault on the issuer's side, worth a retry; never caused by a token).
 */
export function statusOf(code: VerifierErrorCode): 401 | 503 {
  return code === 'jwks_unavailable' ? 503 : 401;
}

/** RFC 6750 §3 challenge for a rejected request. The code is from a fixed set: safe to quote. */
export function challengeOf(code: VerifierErrorCode): string {
  return `Bearer error="invalid_token", error_description="${code}"`;
}
