/**
 * `credctl token inspect`: decodes a token, verifies it against the issuer's published JWKS the
 * way a gateway would, and describes it. Both steps are the project's own: the token profile's
 * parser (src/token-profile.ts) decodes it, the verifier (src/verifier/) checks it (EdDSA or
 * Ed25519, kid in the JWKS, signature, iss equal to the issuer, exp/nbf/iat with the clock skew,
 * aud `gateway:<sandbox id>`, typ at+jwt), and its error codes become the verdict. The raw token
 * is never printed, nor its signature, nor the encrypted credentials it may carry (`cred`): only
 * a placeholder with their size and JWE header.
 *
 * It also takes an egress sentinel (src/issuer/sentinel.ts), the stand-in an egress-delivered
 * CREDENTIALS entry puts in the container: signed with the same keys, so it verifies the same
 * way, but its `typ` (egress+jwt) and `aud` (egress) are not an access token's. It is reported
 * as what it is: usable only through the Sandbox outbound handler, never as a token.
 */

import { JWKS_PATH } from '../src/admin-api.js';
import {
  ACCESS_TOKEN_TYP,
  ALGORITHMS,
  decodeCompact,
  gatewayAudience,
  SENTINEL_AUD,
  SENTINEL_TYP,
  SIGNING_ALG,
  sandboxOfAudience,
  TokenProfileError,
  tokenTypeOf,
} from '../src/token-profile.js';
import { verifierErrorOf } from '../src/verifier/compact.js';
import { VerifierError } from '../src/verifier/errors.js';
import { createVerifierFor, DEFAULT_CLOCK_SKEW_S } from '../src/verifier/verify.js';
import { type Jwks, type KeyListing, SANDBOX_ID, type SandboxStatus } from './api.js';
import type { IssuerClient } from './client.js';
import { CliError, EXIT, oneLine, usageError } from './errors.js';
import { when } from './format.js';

/** The issuer's default CLOCK_SKEW, the verifier's default: exp, nbf and iat may be this far off. */
const CLOCK_TOLERANCE_SECONDS = DEFAULT_CLOCK_SKEW_S;

type TokenKind = 'agent_token' | 'access_token' | 'egress_sentinel' | 'other';

/**
 * What the sentinel's sandbox says of it (admin credentials needed): bound to the current
 * bootstrap key, or refused by the outbound handler under the rule named (its `egress:<rule>`).
 */
type SentinelSandboxCheck = 'current' | 'stale_bootstrap' | 'revoked' | 'unknown_sandbox';

type InspectReason =
  | 'bad_signature'
  | 'unknown_kid'
  | 'missing_kid'
  | 'expired'
  | 'not_yet_valid'
  | 'bad_issuer'
  | 'unsupported_alg'
  | 'invalid_claim'
  | 'invalid_token';

export interface Inspection {
  valid: boolean;
  /** From the header's typ (and scope): an egress sentinel is not a token any gateway accepts. */
  kind: TokenKind;
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
  /** For an egress sentinel, when admin credentials were available: its sandbox's verdict. */
  sandbox_check?: SentinelSandboxCheck;
}

/**
 * The compact JWS from what an operator pasted: surrounding space and a `Bearer ` prefix are
 * dropped. Decoded by the token profile's parser, structure only (what the header says is the
 * verifier's to judge, in the verdict); a refusal is a usage error naming the verifier's code.
 */
function parseToken(input: string): { token: string; header: Record<string, unknown>; payload: Record<string, unknown> } {
  const token = input.trim().replace(/^Bearer\s+/i, '');
  if (token === '') throw usageError('no token given: pass it as the argument, or - to read it from stdin');
  if (token.split('.', 6).length === 5) throw usageError('malformed token: this is an encrypted JWE, not a signed token (JWS)');
  try {
    const { header, claims } = decodeCompact(token);
    return { token, header, payload: claims };
  } catch (e) {
    if (e instanceof TokenProfileError) throw usageError(`malformed token: ${e.message} (${verifierErrorOf(e).code})`);
    throw e;
  }
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

/** From `typ` as a verifier compares it (case-insensitive, `application/` optional), then `scope`. */
function kindOf(header: Record<string, unknown>, payload: Record<string, unknown>): TokenKind {
  const typ = tokenTypeOf(header.typ);
  if (typ === SENTINEL_TYP) return 'egress_sentinel';
  if (typ !== ACCESS_TOKEN_TYP) return 'other';
  const scopes = typeof payload.scope === 'string' ? payload.scope.split(' ') : [];
  return scopes.includes('agent') ? 'agent_token' : 'access_token';
}

/**
 * The verifier's refusal as inspect's verdict. The reasons inspect has always given keep their
 * names; the verifier's finer codes are named in the description of the broader reason.
 */
function describeFailure(
  e: VerifierError,
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  kind: TokenKind,
  issuer: string,
  now: number,
): { reason: InspectReason; description: string } {
  const time = (v: unknown) => (typeof v === 'number' ? when(new Date(v * 1000).toISOString(), now) : 'missing');
  const text = (v: unknown, max: number) => (v === undefined ? 'missing' : oneLine(typeof v === 'string' ? v : JSON.stringify(v), max));
  switch (e.code) {
    case 'bad_signature':
      return { reason: 'bad_signature', description: 'the signature does not verify under the published key' };
    case 'unknown_kid':
      return {
        reason: 'unknown_kid',
        description: "the kid is not in the issuer's JWKS (a removed or revoked key, or another issuer's token)",
      };
    case 'missing_kid':
      return { reason: 'missing_kid', description: 'the header has no kid; the issuer names its key in every token' };
    case 'expired':
      return {
        reason: 'expired',
        description: `expired: exp ${time(payload.exp)}, beyond the ${CLOCK_TOLERANCE_SECONDS} s clock tolerance`,
      };
    case 'not_yet_valid':
      return { reason: 'not_yet_valid', description: `not valid before ${time(payload.nbf)}` };
    case 'bad_issuer':
      return {
        reason: 'bad_issuer',
        description: `iss is ${typeof payload.iss === 'string' ? oneLine(payload.iss, 200) : 'missing'}, not the issuer ${issuer}`,
      };
    case 'unsupported_alg':
      return {
        reason: 'unsupported_alg',
        description: `alg is ${text(header.alg, 40)}: the issuer signs with ${SIGNING_ALG}, verifiers accept ${ALGORITHMS.join(' or ')} only`,
      };
    case 'bad_audience':
      // A sentinel is for the outbound handler, which refuses any other aud (its bad_audience); an access token, for one gateway.
      if (kind === 'egress_sentinel')
        return {
          reason: 'invalid_claim',
          description: `aud is ${text(payload.aud, 80)}, not "${SENTINEL_AUD}": the outbound handler refuses this sentinel (bad_audience)`,
        };
      return {
        reason: 'invalid_claim',
        description: `aud is ${text(payload.aud, 80)}, not a single "${gatewayAudience('<sandbox id>')}": every gateway refuses it (bad_audience)`,
      };
    case 'exp_missing':
    case 'iat_missing':
    case 'sub_missing':
    case 'jti_missing':
      return {
        reason: 'invalid_claim',
        description: `the ${e.code.slice(0, -'_missing'.length)} claim is missing or not valid (${e.code})`,
      };
    case 'iat_in_future':
      return {
        reason: 'invalid_claim',
        description: `issued in the future: iat ${time(payload.iat)}, beyond the ${CLOCK_TOLERANCE_SECONDS} s clock tolerance (iat_in_future)`,
      };
    case 'invalid_typ':
      return {
        reason: 'invalid_token',
        description: `typ is ${text(header.typ, 40)}, not ${ACCESS_TOKEN_TYP} or ${SENTINEL_TYP} (invalid_typ)`,
      };
    case 'jwks_unavailable':
      // Not the token's fault: the JWKS the issuer answered is one no verifier could use.
      throw new CliError(
        EXIT.unreachable,
        `the JWKS at ${issuer}/.well-known/jwks.json is not usable by a verifier (jwks_unavailable); check --issuer`,
      );
    default:
      // invalid_claim, forbidden_header, ...: the verifier's message names the rule, never a value.
      return {
        reason: e.code === 'invalid_claim' ? 'invalid_claim' : 'invalid_token',
        description: `${oneLine(e.message, 120)} (${e.code})`,
      };
  }
}

/** Decodes `input` and verifies it against the issuer's JWKS. A malformed token is a usage error. */
export async function inspectToken(input: string, client: IssuerClient, now: number): Promise<Inspection> {
  const { token, header, payload } = parseToken(input);
  const jwks = await client.public<Jwks>(JWKS_PATH);
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

  const kind = kindOf(header, payload);
  const out: Inspection = { valid: false, kind, header, claims, kid_in_jwks: kidInJwks };
  if (credHeader) out.cred_header = credHeader;
  try {
    await verifierFor(kind, payload, client, jwks, now).verify(token);
    out.valid = true;
  } catch (e) {
    if (!(e instanceof VerifierError)) throw e;
    const f = describeFailure(e, header, payload, kind, client.origin, now);
    out.reason = f.reason;
    out.reason_description = f.description;
  }
  if (client.hasAdminCredentials) {
    // Optional: the key's state and the sentinel's sandbox need the admin API; without them the
    // inspection is just as complete. Only a verified sentinel's claims are worth asking about.
    const [state, check] = await Promise.all([
      kid === undefined ? undefined : keyState(client, kid),
      kind === 'egress_sentinel' && out.valid ? sandboxCheck(client, payload) : undefined,
    ]);
    if (state) out.kid_state = state;
    if (check) out.sandbox_check = check;
  }
  return out;
}

/**
 * The project's verifier over the JWKS already fetched, as a gateway (or, for a sentinel, the
 * outbound handler) checks: this issuer, the clock skew, and the audience the token would have to
 * carry. An access token names its sandbox only in `aud`, so a `gateway:<sandbox id>` there is
 * the one expected; anything else is checked against `gateway:` with no sandbox id, which the
 * issuer never signs, so the verifier refuses it as bad_audience in its own order (after the
 * signature and the issuer).
 */
function verifierFor(kind: TokenKind, payload: Record<string, unknown>, client: IssuerClient, jwks: Jwks, now: number) {
  const sentinel = kind === 'egress_sentinel';
  const audience = sentinel ? SENTINEL_AUD : sandboxOfAudience(payload.aud) !== undefined ? (payload.aud as string) : gatewayAudience('');
  const body = JSON.stringify(jwks);
  return createVerifierFor(sentinel ? SENTINEL_TYP : ACCESS_TOKEN_TYP, {
    jwksUrl: `${client.origin}${JWKS_PATH}`,
    issuer: client.origin,
    audience,
    clockSkew: CLOCK_TOLERANCE_SECONDS,
    tokenCache: { maxEntries: 0 },
    // The JWKS inspect fetched (through the client: its timeout, its error messages) is the one verified against.
    fetch: async () => new Response(body, { status: 200, headers: { 'Content-Type': 'application/json' } }),
    now: () => now,
  });
}

async function keyState(client: IssuerClient, kid: string): Promise<string | undefined> {
  try {
    const listing = await client.admin<KeyListing>('GET', '/keys');
    return listing.keys?.find((k) => k.kid === kid)?.state;
  } catch {
    return undefined;
  }
}

/**
 * The outbound handler's checks that need the sandbox's state, as far as its status shows them
 * and in its order: `cnf.jkt` against the current bootstrap key (whose kid is its thumbprint),
 * then revocation. The container it comes from and the host it goes to are the request's, which
 * inspect does not have.
 */
async function sandboxCheck(client: IssuerClient, payload: Record<string, unknown>): Promise<SentinelSandboxCheck | undefined> {
  const sub = payload.sub;
  const jkt = (payload.cnf as { jkt?: unknown } | undefined)?.jkt;
  if (typeof sub !== 'string' || !SANDBOX_ID.test(sub) || typeof jkt !== 'string') return undefined;
  try {
    const s = await client.admin<SandboxStatus>('GET', `/sandboxes/${sub}`);
    if (s.bootstrap_kid !== jkt) return 'stale_bootstrap';
    return s.revoked ? 'revoked' : 'current';
  } catch (e) {
    // 404: never bootstrapped (or another deployment's sentinel); anything else: nothing shown.
    return e instanceof CliError && e.message.startsWith('the issuer answered 404 not_found:') ? 'unknown_sandbox' : undefined;
  }
}

function kindText(kind: TokenKind, header: Record<string, unknown>): string {
  switch (kind) {
    case 'agent_token':
      return 'agent token (typ at+jwt, scope agent)';
    case 'access_token':
      return 'access token (typ at+jwt)';
    case 'egress_sentinel':
      return `egress sentinel (typ ${SENTINEL_TYP}, aud ${SENTINEL_AUD}): not an access token; usable only through the Sandbox outbound handler`;
    default:
      return `not an issuer token (typ ${typeof header.typ === 'string' ? oneLine(header.typ, 40) : 'missing'}, expected ${ACCESS_TOKEN_TYP} or ${SENTINEL_TYP})`;
  }
}

const SANDBOX_CHECK_TEXT: Record<SentinelSandboxCheck, string> = {
  current: "the sandbox's current bootstrap key",
  stale_bootstrap: "not the sandbox's current bootstrap key: the outbound handler refuses it (stale_bootstrap)",
  revoked: 'the sandbox is revoked: the outbound handler refuses it (revoked)',
  unknown_sandbox: 'no such sandbox at this issuer: the outbound handler refuses it',
};

const SHOWN = new Set(['iss', 'sub', 'aud', 'client_id', 'scope', 'iat', 'nbf', 'exp', 'jti', 'cnf', 'cred', 'cred_ver', 'cred_egress']);
const SENTINEL_SHOWN = new Set(['iss', 'sub', 'aud', 'name', 'hosts', 'cnf', 'iat', 'nbf', 'exp', 'jti']);

/** The human report of an inspection. */
export function inspectionLines(r: Inspection, issuer: string, now: number): string[] {
  const c = r.claims;
  const str = (v: unknown) => (v === undefined ? '-' : oneLine(typeof v === 'string' ? v : JSON.stringify(v)));
  const time = (v: unknown) =>
    typeof v === 'number' ? when(new Date(v * 1000).toISOString(), now) : v === undefined ? '-' : `${str(v)} (not a number)`;
  const kid = typeof r.header.kid === 'string' ? oneLine(r.header.kid, 80) : '-';
  const kidWhere = r.kid_in_jwks
    ? `in the JWKS${r.kid_state ? `, ${r.kid_state}` : ''}`
    : `not in the JWKS${r.kid_state ? ` (${r.kid_state})` : ''}`;
  const sentinel = r.kind === 'egress_sentinel';
  const valid = sentinel
    ? `VALID as an egress sentinel (signature, issuer, times, aud ${SENTINEL_AUD})`
    : 'VALID (signature, issuer, times)';
  const head = [
    `verdict     ${r.valid ? valid : `INVALID: ${r.reason} (${oneLine(r.reason_description ?? '')})`}`,
    `kind        ${kindText(r.kind, r.header)}`,
    `issuer      ${str(c.iss)}${c.iss === issuer ? ' (this issuer)' : ''}`,
    `kid         ${kid} (${kidWhere})`,
    `alg         ${str(r.header.alg)}`,
  ];
  const extraHeader = Object.keys(r.header).filter((k) => !['alg', 'kid', 'typ'].includes(k));
  const headerNote = extraHeader.length > 0 ? [`header      also ${extraHeader.map((k) => oneLine(k, 20)).join(', ')}`] : [];
  if (sentinel) return [...head, ...sentinelLines(r, str, time), ...headerNote];
  const lines = [
    ...head,
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
  if (c.cred_egress !== undefined) {
    const names = Array.isArray(c.cred_egress) ? c.cred_egress.map((n) => str(n)).join(', ') : str(c.cred_egress);
    lines.push(`cred_egress egress-delivered: ${names} (cred holds sentinels for these, not values; the outbound handler adds the values)`);
  }
  for (const [k, v] of Object.entries(c)) if (!SHOWN.has(k)) lines.push(`${oneLine(k, 10).padEnd(11)} ${str(v)}`);
  lines.push(...headerNote);
  return lines;
}

/** A sentinel's claims: which entry it stands for, where it may go, whose it is, and its times. */
function sentinelLines(r: Inspection, str: (v: unknown) => string, time: (v: unknown) => string): string[] {
  const c = r.claims;
  const jkt = (c.cnf as { jkt?: unknown } | undefined)?.jkt;
  const hosts = Array.isArray(c.hosts) ? c.hosts.map((h) => str(h)).join(' ') : str(c.hosts);
  const lines = [
    `entry       ${str(c.name)} (the CREDENTIALS entry it stands for)`,
    `hosts       ${hosts}`,
    `subject     ${str(c.sub)} (the sandbox it was issued to)`,
    `audience    ${str(c.aud)}`,
    `cnf.jkt     ${str(jkt)}${r.sandbox_check ? ` (${SANDBOX_CHECK_TEXT[r.sandbox_check]})` : ''}`,
    `issued at   ${time(c.iat)}`,
  ];
  if (c.nbf !== undefined) lines.push(`not before  ${time(c.nbf)}`);
  lines.push(`expires     ${time(c.exp)}`, `jti         ${str(c.jti)}`);
  for (const [k, v] of Object.entries(c)) if (!SENTINEL_SHOWN.has(k)) lines.push(`${oneLine(k, 10).padEnd(11)} ${str(v)}`);
  lines.push(
    `use         only in a request from sandbox ${str(c.sub)} to ${hosts}, through the Sandbox outbound handler, which puts the value of ${str(c.name)} in its place; a gateway refuses it as a token`,
  );
  return lines;
}
