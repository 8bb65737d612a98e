/**
 * RFC 7523 client assertions (private_key_jwt): parsing and the checks of DESIGN §4, in order.
 *
 * Every failure is a 401 `invalid_client` whose description starts with the rule's stable code
 * (`AssertionRule`), never with any part of the assertion. Parsing is done by hand rather than
 * with jose's jwtVerify because the rules must run in a fixed order, each with its own code, and
 * the key to check against is only known after `iss` has been read.
 */
import { IssuerError } from './errors.js';
import { SANDBOX_ID } from '../admin-api.js';
import { checkSegment, decodeSegment, FORBIDDEN_HEADERS as VERIFIER_FORBIDDEN_HEADERS, parseObject } from '../verifier/compact.js';
import { VerifierError } from '../verifier/errors.js';

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

/** An Ed25519 assertion with ordinary claims is ~400 bytes; 8 KiB leaves room and bounds the work. */
export const ASSERTION_MAX_BYTES = 8 * 1024;
/** DESIGN §4: an assertion lives at most 60 s (exp - iat), which bounds the replay store. */
export const ASSERTION_MAX_LIFETIME_SECONDS = 60;
/** A jti is an identifier, not a payload. */
export const JTI_MAX_LENGTH = 256;
/** Ed25519 under either name: `EdDSA` (RFC 8037) and `Ed25519` (RFC 9864). */
export const ASSERTION_ALGS: readonly string[] = ['EdDSA', 'Ed25519'];
/**
 * The verifier's list (src/verifier/compact.ts): headers that would let the token choose its own
 * key or extend the rules (`b64` changes what is signed, `zip` what is parsed).
 */
const FORBIDDEN_HEADERS = VERIFIER_FORBIDDEN_HEADERS;

export interface ParsedAssertion {
  header: Record<string, unknown>;
  claims: Record<string, unknown>;
  signingInput: Uint8Array;
  signature: Uint8Array;
  /** The claimed sandbox id, syntactically valid, not yet trusted. */
  iss: string;
}

/**
 * One JSON-object segment, as strictly as the verifier reads tokens (compact.ts): canonical
 * base64url, UTF-8 with no byte-order mark, no repeated member name. Returns the refusal's rule.
 */
function segmentObject(part: string, what: string): Record<string, unknown> | AssertionError {
  try {
    checkSegment(part, what);
    return parseObject(part, what);
  } catch (e) {
    if (e instanceof VerifierError && e.code === 'duplicate_member') return new AssertionError('duplicate_member', `the assertion ${what} repeats a member name`);
    return new AssertionError('malformed_assertion', 'the assertion is not a compact JWS with a JSON object header and payload (canonical base64url, UTF-8 JSON)');
  }
}

/** The signature segment: canonical base64url, or empty (an unsecured JWS, which the alg rule refuses). */
function signatureBytes(part: string): Uint8Array | undefined {
  if (part === '') return new Uint8Array(0);
  try {
    checkSegment(part, 'signature');
    return decodeSegment(part);
  } catch {
    return undefined;
  }
}

/**
 * Checks that need no key: size, compact JWS form, `alg`, forbidden headers, and that `iss` is a
 * syntactically valid sandbox id. Returns the decoded parts.
 */
export function parseAssertion(jwt: string): ParsedAssertion {
  if (jwt.length > ASSERTION_MAX_BYTES) throw new AssertionError('assertion_too_large', `the assertion must be at most ${ASSERTION_MAX_BYTES} bytes`);
  const parts = jwt.split('.');
  if (parts.length !== 3) throw new AssertionError('malformed_assertion', 'the assertion is not a compact JWS (three base64url parts)');
  const [h, p, s] = parts as [string, string, string];
  const header = segmentObject(h, 'header');
  if (header instanceof AssertionError) throw header;
  const claims = segmentObject(p, 'claims');
  if (claims instanceof AssertionError) throw claims;
  const signature = signatureBytes(s);
  if (!signature) throw new AssertionError('malformed_assertion', 'the assertion signature is not canonical base64url');
  if (typeof header.alg !== 'string' || !ASSERTION_ALGS.includes(header.alg)) {
    throw new AssertionError('unsupported_alg', `the assertion alg must be one of ${ASSERTION_ALGS.join(', ')}`);
  }
  for (const name of FORBIDDEN_HEADERS) {
    if (Object.hasOwn(header, name)) throw new AssertionError('forbidden_header', `the assertion header must not carry "${name}"`);
  }
  if (header.kid !== undefined && typeof header.kid !== 'string') throw new AssertionError('malformed_assertion', 'the header kid must be a string');
  const iss = claims.iss;
  if (typeof iss !== 'string' || !SANDBOX_ID.test(iss)) throw new AssertionError('unknown_client', 'iss does not name a sandbox');
  return { header, claims, signingInput: new TextEncoder().encode(`${h}.${p}`), signature, iss };
}

/**
 * The `iss` of an assertion that failed the key-free checks, if it is a syntactically valid sandbox
 * id, so the refusal can be recorded in that sandbox's audit log. Never trusted for anything else.
 */
export function peekIssuer(jwt: string): string | undefined {
  if (jwt.length > ASSERTION_MAX_BYTES) return undefined;
  const claims = segmentObject(jwt.split('.')[1] ?? '', 'claims');
  const iss = claims instanceof AssertionError ? undefined : claims.iss;
  return typeof iss === 'string' && SANDBOX_ID.test(iss) ? iss : undefined;
}

/** The header kid, if present, must be the thumbprint of the sandbox's current bootstrap key. */
export function checkKid(a: ParsedAssertion, currentKid: string): void {
  if (a.header.kid !== undefined && a.header.kid !== currentKid) {
    throw new AssertionError('kid_mismatch', 'the header kid is not the sandbox\'s current bootstrap key');
  }
}

export async function verifySignature(a: ParsedAssertion, key: CryptoKey): Promise<void> {
  let ok = false;
  try {
    ok = await crypto.subtle.verify({ name: 'Ed25519' }, key, a.signature, a.signingInput);
  } catch {
    ok = false;
  }
  if (!ok) throw new AssertionError('bad_signature', 'the signature does not verify under the sandbox\'s bootstrap key');
}

export interface ClaimPolicy {
  /** Accepted `aud` values: the issuer URL and the token endpoint URL. */
  audiences: readonly string[];
  clockSkewSeconds: number;
}

const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/**
 * The claim rules after the signature, in DESIGN order. Returns the jti and until when it must
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
