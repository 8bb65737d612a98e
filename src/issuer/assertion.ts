/**
 * RFC 7523 client assertions (private_key_jwt): parsing and the checks of docs/architecture.md, "Client assertion", in order.
 *
 * Every failure is a 401 `invalid_client` whose description starts with the rule's stable code
 * (`AssertionRule`), never with any part of the assertion. Parsing is done by hand rather than
 * with jose's jwtVerify because the rules must run in a fixed order, each with its own code, and
 * the key to check against is only known after `iss` has been read.
 */

import { SANDBOX_ID } from '../admin-api.js';
import { MAX_TOKEN_BYTES, parseCompact, parseJsonSegment, type TokenProfileCode, TokenProfileError } from '../token-profile.js';
import { IssuerError } from './errors.js';

export type AssertionRule =
  | 'assertion_too_large'
  | 'malformed_assertion'
  | 'duplicate_member'
  | 'unsupported_alg'
  | 'forbidden_header'
  | 'unknown_client'
  | 'client_id_mismatch'
  | 'container_mismatch'
  | 'client_revoked'
  | 'kid_mismatch'
  | 'bad_signature'
  | 'sub_mismatch'
  | 'bad_audience'
  | 'iat_missing'
  | 'exp_missing'
  | 'expired'
  | 'exp_too_far'
  | 'exp_before_iat'
  | 'iat_in_future'
  | 'nbf_in_future'
  | 'jti_missing'
  | 'jti_replayed';

export class AssertionError extends IssuerError {
  readonly rule: AssertionRule;
  constructor(rule: AssertionRule, text: string) {
    super('invalid_client', `${rule}: ${text}`, { rule });
    this.name = 'AssertionError';
    this.rule = rule;
  }
}

/**
 * The token profile's cap (src/token-profile.ts): an Ed25519 assertion with ordinary claims is
 * ~400 bytes; 8 KiB leaves room and bounds the work.
 */
const ASSERTION_MAX_BYTES = MAX_TOKEN_BYTES;
/** docs/architecture.md, "Client assertion": an assertion lives at most 60 s (exp - iat), which bounds the replay store. */
const ASSERTION_MAX_LIFETIME_SECONDS = 60;
/** A jti is an identifier, not a payload. */
const JTI_MAX_LENGTH = 256;

export interface ParsedAssertion {
  header: Record<string, unknown>;
  claims: Record<string, unknown>;
  signingInput: Uint8Array<ArrayBuffer>;
  signature: Uint8Array<ArrayBuffer>;
  /** The claimed sandbox id, syntactically valid, not yet trusted. */
  iss: string;
}

/**
 * The rule of each refusal of the token profile's parser: the same parser as the verifier's, so
 * the issuer reads an assertion exactly as strictly as a verifier reads a token. An empty
 * signature is an unsecured JWS (`alg: none`, RFC 7515 Appendix A.5), refused by the alg rule.
 */
const RULES: Record<TokenProfileCode, AssertionRule> = {
  too_large: 'assertion_too_large',
  malformed: 'malformed_assertion',
  duplicate_member: 'duplicate_member',
  unsecured: 'unsupported_alg',
  unsupported_alg: 'unsupported_alg',
  forbidden_header: 'forbidden_header',
};

/** The parser's message names a rule and a segment, never the assertion's content. */
function refusal(e: TokenProfileError): AssertionError {
  return new AssertionError(RULES[e.code], `the assertion: ${e.message}`);
}

/**
 * Checks that need no key: the token profile's parse (size, compact JWS form, `alg`, forbidden
 * headers), then that `kid`, if present, is a string and that `iss` is a syntactically valid
 * sandbox id. Returns the decoded parts.
 */
export function parseAssertion(jwt: string): ParsedAssertion {
  let parts: ReturnType<typeof parseCompact>;
  try {
    parts = parseCompact(jwt);
  } catch (e) {
    throw e instanceof TokenProfileError ? refusal(e) : e;
  }
  const { header, claims, signingInput, signature } = parts;
  if (header.kid !== undefined && typeof header.kid !== 'string')
    throw new AssertionError('malformed_assertion', 'the header kid must be a string');
  const iss = claims.iss;
  if (typeof iss !== 'string' || !SANDBOX_ID.test(iss)) throw new AssertionError('unknown_client', 'iss does not name a sandbox');
  return { header, claims, signingInput, signature, iss };
}

/**
 * The `iss` of an assertion that failed the key-free checks, if it is a syntactically valid sandbox
 * id, so the refusal can be recorded in that sandbox's audit log. Never trusted for anything else.
 */
export function peekIssuer(jwt: string): string | undefined {
  if (jwt.length > ASSERTION_MAX_BYTES) return undefined;
  let iss: unknown;
  try {
    iss = parseJsonSegment(jwt.split('.')[1] ?? '', 'claims set').iss;
  } catch {
    return undefined;
  }
  return typeof iss === 'string' && SANDBOX_ID.test(iss) ? iss : undefined;
}

/** The header kid, if present, must be the thumbprint of the sandbox's current bootstrap key. */
export function checkKid(a: ParsedAssertion, currentKid: string): void {
  if (a.header.kid !== undefined && a.header.kid !== currentKid) {
    throw new AssertionError('kid_mismatch', "the header kid is not the sandbox's current bootstrap key");
  }
}

export async function verifySignature(a: ParsedAssertion, key: CryptoKey): Promise<void> {
  let ok = false;
  try {
    ok = await crypto.subtle.verify({ name: 'Ed25519' }, key, a.signature, a.signingInput);
  } catch {
    ok = false;
  }
  if (!ok) throw new AssertionError('bad_signature', "the signature does not verify under the sandbox's bootstrap key");
}

export interface ClaimPolicy {
  /** Accepted `aud` values: the issuer URL and the token endpoint URL. */
  audiences: readonly string[];
  clockSkewSeconds: number;
}

const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/**
 * The claim rules after the signature, in the documented order. Returns the jti and until when it must
 * be remembered (epoch ms): the last moment the assertion could still be accepted.
 */
export function checkClaims(a: ParsedAssertion, now: number, policy: ClaimPolicy): { jti: string; rememberUntil: number } {
  const c = a.claims;
  const skew = policy.clockSkewSeconds;
  const nowS = now / 1000;
  if (c.sub !== a.iss) throw new AssertionError('sub_mismatch', 'sub must equal iss');
  const aud = c.aud;
  const auds = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [];
  if (auds.length === 0 || !auds.every((x) => typeof x === 'string' && policy.audiences.includes(x))) {
    throw new AssertionError('bad_audience', 'aud must be the issuer URL or the token endpoint URL (a string, or an array of only those)');
  }
  if (!finite(c.iat)) throw new AssertionError('iat_missing', 'iat must be present as a number');
  if (!finite(c.exp)) throw new AssertionError('exp_missing', 'exp must be present as a number');
  if (c.exp + skew <= nowS) throw new AssertionError('expired', 'the assertion has expired');
  if (c.exp < c.iat) throw new AssertionError('exp_before_iat', 'exp must not be before iat');
  if (c.exp - c.iat > ASSERTION_MAX_LIFETIME_SECONDS) {
    throw new AssertionError('exp_too_far', `exp must be at most ${ASSERTION_MAX_LIFETIME_SECONDS} s after iat`);
  }
  if (c.iat > nowS + skew) throw new AssertionError('iat_in_future', 'iat is in the future beyond the allowed clock skew');
  if (c.nbf !== undefined && (!finite(c.nbf) || c.nbf > nowS + skew)) {
    throw new AssertionError('nbf_in_future', 'nbf is in the future beyond the allowed clock skew');
  }
  if (typeof c.jti !== 'string' || c.jti.length === 0 || c.jti.length > JTI_MAX_LENGTH) {
    throw new AssertionError('jti_missing', `jti must be present, a string of 1 to ${JTI_MAX_LENGTH} characters`);
  }
  return { jti: c.jti, rememberUntil: (c.exp + skew) * 1000 };
}
