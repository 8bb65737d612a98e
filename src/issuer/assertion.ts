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

export type AssertionRule =
  | 'assertion_too_large'
  | 'malformed_assertion'
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
/** Headers that would let the token choose its own key or extend the rules; `b64` changes what is signed. */
const FORBIDDEN_HEADERS = ['jwk', 'jku', 'x5u', 'x5c', 'x5t', 'x5t#S256', 'crit', 'b64'];


export interface ParsedAssertion {
  header: Record<string, unknown>;
  claims: Record<string, unknown>;
  signingInput: Uint8Array;
  signature: Uint8Array;
  /** The claimed sandbox id, syntactically valid, not yet trusted. */
  iss: string;
}

const B64URL = /^[A-Za-z0-9_-]*$/;

function b64urlDecode(part: string): Uint8Array | undefined {
  if (!B64URL.test(part) || part.length % 4 === 1) return undefined;
  const b64 = part.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (part.length % 4)) % 4);
  try {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  } catch {
    return undefined;
  }
}

function jsonObject(bytes: Uint8Array | undefined): Record<string, unknown> | undefined {
  if (!bytes) return undefined;
  try {
    const v: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes));
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
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
  const header = jsonObject(b64urlDecode(h));
  const claims = jsonObject(b64urlDecode(p));
  const signature = b64urlDecode(s);
  // An empty signature is still a compact JWS (an unsecured one); the alg rule refuses it next.
  if (!header || !claims || !signature) {
    throw new AssertionError('malformed_assertion', 'the assertion is not a compact JWS with a JSON object header and payload');
  }
  if (typeof header.alg !== 'string' || !ASSERTION_ALGS.includes(header.alg)) {
    throw new AssertionError('unsupported_alg', `the assertion alg must be one of ${ASSERTION_ALGS.join(', ')}`);
  }
  for (const name of FORBIDDEN_HEADERS) {
    if (name in header) throw new AssertionError('forbidden_header', `the assertion header must not carry "${name}"`);
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
  const claims = jsonObject(b64urlDecode(jwt.split('.')[1] ?? ''));
  const iss = claims?.iss;
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
