/**
 * Egress sentinels: what an egress-delivered CREDENTIALS entry puts in the container in place of
 * its value (README, "Egress delivery").
 *
 * A sentinel is a compact JWS signed with the issuer's active key. Its header `typ: egress+jwt`
 * and its `aud: egress` differ from an access token's (`at+jwt`, `gateway:<id>`), so neither is
 * ever accepted as the other. Its claims bind it to one sandbox (`sub`), one container run
 * (`cnf.jkt`, the sandbox's bootstrap key at the time: a restart issues a new key and voids every
 * older sentinel), one entry (`name`) and that entry's hosts, and it expires with the agent token
 * that carried it. It is useless anywhere but at the outbound handler, which checks it
 * (`checkSentinel`, in the order of the rules below) and puts the real value in its place.
 */
import { SignJWT } from 'jose';
import { parseCompact, SENTINEL_AUD, SENTINEL_TYP, SIGNING_ALG, TokenProfileError, tokenTypeOf } from '../token-profile.js';
import type { ActiveSigningKey } from './tokens.js';

/** A sentinel is ~600 bytes; anything far larger in the bound header is not one of ours. */
const SENTINEL_MAX_BYTES = 4 * 1024;

export interface SentinelInput {
  signer: ActiveSigningKey;
  issuer: string;
  sandboxId: string;
  /** The CREDENTIALS entry it stands for. */
  name: string;
  hosts: readonly string[];
  /** Thumbprint of the sandbox's current bootstrap key. */
  jkt: string;
  /** Epoch seconds, the same as the agent token that carries it. */
  iat: number;
  exp: number;
  jti: string;
}

export async function mintSentinel(i: SentinelInput): Promise<string> {
  return new SignJWT({
    iss: i.issuer,
    sub: i.sandboxId,
    aud: SENTINEL_AUD,
    name: i.name,
    hosts: [...i.hosts],
    cnf: { jkt: i.jkt },
    jti: i.jti,
  })
    .setProtectedHeader({ alg: SIGNING_ALG, kid: i.signer.kid, typ: SENTINEL_TYP })
    .setIssuedAt(i.iat)
    .setExpirationTime(i.exp)
    .sign(i.signer.key);
}

/**
 * The outbound handler's refusal rules, in the order they are checked. Each is the
 * `error_description` of a `403 egress_refused`, and the refusal's audit code (`egress:<rule>`).
 */
export type SentinelRule =
  | 'malformed_sentinel'
  | 'unknown_key'
  | 'bad_signature'
  | 'bad_type'
  | 'bad_issuer'
  | 'bad_audience'
  | 'expired'
  | 'wrong_sandbox'
  | 'stale_bootstrap'
  | 'revoked'
  | 'host_not_bound';

/**
 * Whether a header value is shaped like a compact JWS (three base64url segments): on a bound host
 * such a value must be a valid sentinel, and is refused otherwise. Anything else (an opaque API
 * key, an empty value) is not ours and goes out unchanged.
 */
export function looksLikeJws(value: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(value);
}

export interface SentinelClaims {
  kid: string;
  iss: string;
  sub: string;
  name: string;
  hosts: string[];
  jkt: string;
  exp: number;
  jti: string;
}

export class SentinelRefusal extends Error {
  constructor(
    readonly rule: SentinelRule,
    /** Whether the signature had verified under a published key when the rule refused. */
    readonly authenticated: boolean,
    /** The sentinel's sandbox: trusted only when `authenticated`. */
    readonly sub?: string,
  ) {
    super(rule);
    this.name = 'SentinelRefusal';
  }
}

export interface SentinelCheckDeps {
  issuer: string;
  clockSkewSeconds: number;
  /** Epoch ms. */
  now: number;
  /** The published key with this kid, imported for Ed25519 verification; undefined if none. */
  publicKey: (kid: string) => Promise<CryptoKey | undefined>;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/**
 * The signature, then `typ`, `iss`, `aud`, and `exp` (with the skew). Parsing is the token
 * profile's, the verifier's too (canonical base64url, no repeated member, `alg` EdDSA or Ed25519,
 * no header that names its own key), within the smaller SENTINEL_MAX_BYTES. The checks that
 * need the request and the sandbox's state are the outbound handler's (src/sandbox/egress.ts).
 */
export async function checkSentinel(token: string, deps: SentinelCheckDeps): Promise<SentinelClaims> {
  const malformed = () => new SentinelRefusal('malformed_sentinel', false);
  if (token.length > SENTINEL_MAX_BYTES) throw malformed();
  let parts: ReturnType<typeof parseCompact>;
  try {
    parts = parseCompact(token);
  } catch (e) {
    if (e instanceof TokenProfileError) throw malformed();
    throw e;
  }
  const { header, claims, signingInput, signature } = parts;
  const kid = str(header.kid);
  if (!kid) throw new SentinelRefusal('unknown_key', false);
  const key = await deps.publicKey(kid);
  if (!key) throw new SentinelRefusal('unknown_key', false);
  const ok = await crypto.subtle.verify({ name: 'Ed25519' }, key, signature, signingInput);
  if (!ok) throw new SentinelRefusal('bad_signature', false);
  // From here on the claims are ours: sub names the sandbox the sentinel was issued to.
  const sub = str(claims.sub);
  const refuse = (rule: SentinelRule) => new SentinelRefusal(rule, true, sub);
  if (tokenTypeOf(header.typ) !== SENTINEL_TYP) throw refuse('bad_type');
  if (claims.iss !== deps.issuer) throw refuse('bad_issuer');
  if (claims.aud !== SENTINEL_AUD) throw refuse('bad_audience');
  const exp = claims.exp;
  if (typeof exp !== 'number' || !Number.isFinite(exp) || deps.now / 1000 >= exp + deps.clockSkewSeconds) throw refuse('expired');
  const cnf = claims.cnf as { jkt?: unknown } | undefined;
  const name = str(claims.name);
  const jkt = str(cnf?.jkt);
  const jti = str(claims.jti);
  const hosts = claims.hosts;
  // Signed by us with these types, so these hold; checked anyway, as a verifier would.
  if (!sub || !name || !jkt || !jti || !Array.isArray(hosts) || !hosts.every((x) => typeof x === 'string'))
    throw refuse('malformed_sentinel');
  return { kid, iss: deps.issuer, sub, name, hosts: hosts as string[], jkt, exp, jti };
}
