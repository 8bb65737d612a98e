/**
 * `credctl token inspect`: decodes a token, verifies it against the issuer's published JWKS the
 * way a gateway would (EdDSA only, kid in the JWKS, exp/nbf with the clock skew, iss equal to
 * the issuer), and describes it. The raw token is never printed, nor the encrypted credentials
 * it may carry (`cred`): only a placeholder with their size and JWE header.
 */
import { createLocalJWKSet, jwtVerify, type JWTPayload } from 'jose';
import type { Jwks, KeyListing } from './api.js';
import type { IssuerClient } from './client.js';
import { oneLine, usageError } from './errors.js';
import { when } from './format.js';

/** The issuer's default CLOCK_SKEW: verifiers accept exp and nbf this far off. */
export const CLOCK_TOLERANCE_SECONDS = 30;
/** The issuer signs with Ed25519 under the name every verifier knows. */
const ALGORITHMS = ['EdDSA'];
/** The issuer's tokens are at most 8 KiB; anything much larger is not one of them. */
const TOKEN_MAX_CHARS = 16 * 1024;
export const TOKEN_TYP = 'at+jwt';

export type InspectReason = 'bad_signature' | 'unknown_kid' | 'missing_kid' | 'expired' | 'not_yet_valid' | 'bad_issuer' | 'unsupported_alg' | 'invalid_claim' | 'invalid_token';

export interface Inspection {
  valid: boolean;
  reason?: InspectReason;
  reason_description?: string;
  header: Record<string, unknown>;
  /** The payload, with `cred` replaced by a placeholder. */
  claims: Record<string, unknown>;
  kid_in_jwks: boolean;
  /** The key's state from the admin API, when admin credentials were available. */
  kid_state?: string;
  /** alg and enc of the encrypted credentials' JWE header, when the token carries them. */
  cred_header?: { alg?: string; enc?: string };
}

const B64URL = /^[A-Za-z0-9_-]*$/;

function decodeSegment(seg: string, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(seg, 'base64url').toString('utf8'));
  } catch {
    throw usageError(`malformed token: the ${what} is not base64url-encoded JSON`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw usageError(`malformed token: the ${what} is not a JSON object`);
  return v as Record<string, unknown>;
}

/** The compact JWS from what an operator pasted: surrounding space and a `Bearer ` prefix are dropped. */
export function parseToken(input: string): { token: string; header: Record<string, unknown>; payload: Record<string, unknown> } {
  const token = input.trim().replace(/^Bearer\s+/i, '');
  if (token === '') throw usageError('no token given: pass it as the argument, or - to read it from stdin');
  if (token.length > TOKEN_MAX_CHARS) throw usageError(`malformed token: longer than ${TOKEN_MAX_CHARS} characters`);
  const parts = token.split('.');
  if (parts.length === 5) throw usageError('malformed token: this is an encrypted JWE, not a signed token (JWS)');
  if (parts.length !== 3 || parts.some((p) => !B64URL.test(p)) || parts[0] === '' || parts[1] === '') {
    throw usageError('malformed token: not a compact JWS (three base64url segments separated by dots)');
  }
  return { token, header: decodeSegment(parts[0]!, 'header'), payload: decodeSegment(parts[1]!, 'payload') };
}

/** `cred` as it may be shown: its size and JWE header, never its content. */
function credPlaceholder(cred: unknown): { text: string; header?: { alg?: string; enc?: string } } {
  const size = typeof cred === 'string' ? Buffer.byteLength(cred) : Buffer.byteLength(JSON.stringify(cred) ?? '');
  const text = `[encrypted credentials, ${size} bytes, not shown]`;
  if (typeof cred !== 'string') return { text };
  try {
    const h = JSON.parse(Buffer.from(cred.split('.')[0] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
    const pick = (k: string) => (typeof h[k] === 'string' ? oneLine(h[k] as string, 40) : undefined);
    return { text, header: { alg: pick('alg'), enc: pick('enc') } };
  } catch {
    return { text };
  }
}

function describeFailure(e: unknown, payload: Record<string, unknown>, issuer: string, now: number): { reason: InspectReason; description: string } {
  const err = e as { code?: string; claim?: string; reason?: string };
  const time = (v: unknown) => (typeof v === 'number' ? when(new Date(v * 1000).toISOString(), now) : 'missing');
  switch (err?.code) {
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return { reason: 'bad_signature', description: 'the signature does not verify under the published key' };
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return { reason: 'unknown_kid', description: "the kid is not in the issuer's JWKS (a removed or revoked key, or another issuer's token)" };
    case 'ERR_JWT_EXPIRED':
      return { reason: 'expired', description: `expired: exp ${time(payload.exp)}, beyond the ${CLOCK_TOLERANCE_SECONDS} s clock tolerance` };
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return { reason: 'unsupported_alg', description: 'the issuer signs with EdDSA only' };
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if (err.claim === 'iss') return { reason: 'bad_issuer', description: `iss is ${typeof payload.iss === 'string' ? oneLine(payload.iss, 200) : 'missing'}, not the issuer ${issuer}` };
      if (err.claim === 'nbf') return { reason: 'not_yet_valid', description: `not valid before ${time(payload.nbf)}` };
      return { reason: 'invalid_claim', description: `the ${oneLine(String(err.claim ?? 'a'), 40)} claim is ${err.reason === 'missing' ? 'missing' : 'not valid'}` };
    default:
      return { reason: 'invalid_token', description: `the token does not verify (${oneLine(String(err?.code ?? 'error'), 60)})` };
  }
}

/** Decodes and verifies `input` against the issuer's JWKS. A malformed token is a usage error. */
export async function inspectToken(input: string, client: IssuerClient, now: number): Promise<Inspection> {
  const { token, header, payload } = parseToken(input);
  const jwks = await client.public<Jwks>('/.well-known/jwks.json');
  if (!Array.isArray(jwks.keys)) throw usageError(`the JWKS at ${client.origin}/.well-known/jwks.json has no "keys" array`);
  const kid = typeof header.kid === 'string' ? header.kid : undefined;
  const kidInJwks = kid !== undefined && jwks.keys.some((k) => k.kid === kid);

  const claims: Record<string, unknown> = { ...payload };
  let credHeader: Inspection['cred_header'];
  if ('cred' in payload) {
    const p = credPlaceholder(payload.cred);
    claims.cred = p.text;
    credHeader = p.header;
  }

  const out: Inspection = { valid: false, header, claims, kid_in_jwks: kidInJwks };
  if (credHeader) out.cred_header = credHeader;
  if (kid === undefined) {
    out.reason = 'missing_kid';
    out.reason_description = 'the header has no kid; the issuer names its key in every token';
  } else {
    try {
      await jwtVerify(token, createLocalJWKSet(jwks as Parameters<typeof createLocalJWKSet>[0]), {
        algorithms: ALGORITHMS,
        issuer: client.origin,
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        requiredClaims: ['exp'],
        currentDate: new Date(now),
      });
      out.valid = true;
    } catch (e) {
      const f = describeFailure(e, payload as JWTPayload, client.origin, now);
      out.reason = f.reason;
      out.reason_description = f.description;
    }
  }
  if (kid !== undefined && client.hasAdminCredentials) {
    // Optional: the key's state needs the admin API; without it the inspection is just as complete.
    try {
      const listing = await client.admin<KeyListing>('GET', '/keys');
      const state = listing.keys?.find((k) => k.kid === kid)?.state;
      if (state) out.kid_state = state;
    } catch {
      /* no state shown */
    }
  }
  return out;
}

function kindOf(header: Record<string, unknown>, claims: Record<string, unknown>): string {
  if (header.typ !== TOKEN_TYP) return `not an issuer token (typ ${typeof header.typ === 'string' ? oneLine(header.typ, 40) : 'missing'}, expected ${TOKEN_TYP})`;
  const scopes = typeof claims.scope === 'string' ? claims.scope.split(' ') : [];
  return scopes.includes('agent') ? 'agent token (typ at+jwt, scope agent)' : 'access token (typ at+jwt)';
}

const SHOWN = new Set(['iss', 'sub', 'aud', 'client_id', 'scope', 'iat', 'nbf', 'exp', 'jti', 'cnf', 'cred', 'cred_ver']);

/** The human report of an inspection. */
export function inspectionLines(r: Inspection, issuer: string, now: number): string[] {
  const c = r.claims;
  const str = (v: unknown) => (v === undefined ? '-' : oneLine(typeof v === 'string' ? v : JSON.stringify(v)));
  const time = (v: unknown) => (typeof v === 'number' ? when(new Date(v * 1000).toISOString(), now) : v === undefined ? '-' : `${str(v)} (not a number)`);
  const kid = typeof r.header.kid === 'string' ? oneLine(r.header.kid, 80) : '-';
  const kidWhere = r.kid_in_jwks ? `in the JWKS${r.kid_state ? `, ${r.kid_state}` : ''}` : `not in the JWKS${r.kid_state ? ` (${r.kid_state})` : ''}`;
  const lines = [
    `verdict     ${r.valid ? 'VALID (signature, issuer, times)' : `INVALID: ${r.reason} (${oneLine(r.reason_description ?? '')})`}`,
    `kind        ${kindOf(r.header, c)}`,
    `issuer      ${str(c.iss)}${c.iss === issuer ? ' (this issuer)' : ''}`,
    `kid         ${kid} (${kidWhere})`,
    `alg         ${str(r.header.alg)}`,
    `subject     ${str(c.sub)}`,
    `audience    ${str(c.aud)}`,
    `client_id   ${str(c.client_id)}`,
    `scope       ${str(c.scope)}`,
    `issued at   ${time(c.iat)}`,
    `not before  ${time(c.nbf)}`,
    `expires     ${time(c.exp)}`,
    `jti         ${str(c.jti)}`,
  ];
  if (c.cnf !== undefined) lines.push(`cnf         ${str(c.cnf)}`);
  if (c.cred_ver !== undefined) lines.push(`cred_ver    ${str(c.cred_ver)}`);
  if (c.cred !== undefined) {
    const h = r.cred_header;
    lines.push(`cred        ${str(c.cred)}${h?.alg || h?.enc ? ` (JWE ${h.alg ?? '?'} / ${h.enc ?? '?'})` : ''}`);
  }
  for (const [k, v] of Object.entries(c)) if (!SHOWN.has(k)) lines.push(`${oneLine(k, 10).padEnd(11)} ${str(v)}`);
  const extraHeader = Object.keys(r.header).filter((k) => !['alg', 'kid', 'typ'].includes(k));
  if (extraHeader.length > 0) lines.push(`header      also ${extraHeader.map((k) => oneLine(k, 20)).join(', ')}`);
  return lines;
}
