/**
 * `createVerifier`: the strict access-token check of docs/architecture.md, "Verifier", on jose's `jwtVerify`.
 *
 * Order: size, the verified-token cache, structure and header (compact.ts), key (jwks.ts),
 * signature and registered claims (jose), then what jose does not check: a single string `aud`,
 * finite `exp`/`iat` (JSON's `1e999` is Infinity, which jose takes as a number), `iat` not in the
 * future, non-empty `sub` and `jti`.
 */
import { type JWTPayload, errors as joseErrors, jwtVerify } from 'jose';
import { ACCESS_TOKEN_TYP, ALGORITHMS, MAX_TOKEN_BYTES, type TokenType } from '../token-profile.js';
import { checkCompact } from './compact.js';
import { VerifierError, type VerifierErrorCode } from './errors.js';
import { createJwksCache, type JwksEvent, type JwksOptions, type JwksStatus } from './jwks.js';
import { DEFAULT_MAX_ENTRIES, TokenCache } from './token-cache.js';

/** docs/architecture.md, "Timing invariants": 30 s of clock skew either way. */
export const DEFAULT_CLOCK_SKEW_S = 30;
/** Beyond five minutes a skew stops being clock drift and becomes an extension of every token's life. */
const MAX_CLOCK_SKEW_S = 300;

export interface VerifiedClaims extends JWTPayload {
  readonly iss: string;
  readonly sub: string;
  readonly aud: string;
  readonly exp: number;
  readonly iat: number;
  readonly jti: string;
}

export interface VerifierOptions {
  /** Where the issuer publishes its keys, e.g. `https://issuer.example/.well-known/jwks.json`. */
  jwksUrl: string | URL;
  /** The one accepted `iss`. */
  issuer: string;
  /** The one accepted `aud`, e.g. `gateway:main`. */
  audience: string;
  /** Seconds of clock skew allowed on `exp`, `nbf` and `iat`. Default 30, at most 300. */
  clockSkew?: number;
  jwks?: JwksOptions;
  /** Verified-token cache; `{ maxEntries: 0 }` turns it off. Default 10,000 entries. */
  tokenCache?: { maxEntries?: number };
  /** Injected for tests and for platforms with their own fetch. Default: the global fetch. */
  fetch?: typeof fetch;
  /** ms since the epoch. Default Date.now. */
  now?: () => number;
  /** Receives JWKS events and unexpected verification faults; identifiers only, never a token. */
  onEvent?: (e: VerifierEvent) => void;
}

export type VerifierEvent = JwksEvent | { event: 'token_cache_pruned'; dropped: number } | { event: 'verify_fault'; error: string };

export interface VerifierStatus {
  jwks: JwksStatus;
  tokenCacheSize: number;
}

export interface Verifier {
  /** Resolves to the token's claims (frozen), or rejects with a VerifierError. */
  verify(token: string): Promise<VerifiedClaims>;
  /**
   * The claims verify(token) would resolve to at once, without a promise or a microtask: the token
   * is in the verified-token cache (it passed every check, and has not expired) and the JWKS copy
   * is fresh. Undefined otherwise (then verify() decides: a first sighting, an expired entry, or a
   * stale JWKS copy to revalidate). For a caller on a hot path, such as the proxy, where most
   * requests carry a token seen before.
   */
  peek(token: string): VerifiedClaims | undefined;
  /** Fetch the JWKS now, e.g. at start-up so the first request does not wait. */
  refresh(): Promise<void>;
  status(): VerifierStatus;
}

function requireString(name: string, v: unknown): string {
  if (typeof v !== 'string' || v === '') throw new TypeError(`createVerifier: ${name} must be a non-empty string`);
  return v;
}

const CLAIM_MISSING: Record<string, VerifierErrorCode> = { exp: 'exp_missing', iat: 'iat_missing', sub: 'sub_missing', jti: 'jti_missing' };

/** jose's errors to our codes. jose names the claim; the reason tells missing from wrong. */
function fromJose(e: unknown): VerifierError | undefined {
  if (e instanceof VerifierError) return e;
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) return new VerifierError('bad_signature', 'signature does not verify');
  if (e instanceof joseErrors.JWTExpired) return new VerifierError('expired', 'token expired');
  if (e instanceof joseErrors.JWTClaimValidationFailed) {
    const claim = e.claim;
    if (e.reason === 'missing' || (e.reason === 'invalid' && claim in CLAIM_MISSING)) {
      return new VerifierError(
        CLAIM_MISSING[claim] ?? (claim === 'iss' ? 'bad_issuer' : claim === 'aud' ? 'bad_audience' : 'invalid_claim'),
        `${claim} missing or invalid`,
      );
    }
    if (claim === 'iss') return new VerifierError('bad_issuer', 'unexpected iss');
    if (claim === 'aud') return new VerifierError('bad_audience', 'unexpected aud');
    if (claim === 'nbf') return new VerifierError(e.reason === 'invalid' ? 'invalid_claim' : 'not_yet_valid', 'nbf check failed');
    if (claim === 'typ') return new VerifierError('invalid_typ', 'unexpected typ');
    return new VerifierError('invalid_claim', `${claim} check failed`);
  }
  if (e instanceof joseErrors.JOSEAlgNotAllowed) return new VerifierError('unsupported_alg', 'alg not allowed');
  if (e instanceof joseErrors.JWKSNoMatchingKey) return new VerifierError('unknown_kid', 'kid not in the JWKS');
  if (e instanceof joseErrors.JWTInvalid || e instanceof joseErrors.JWSInvalid || e instanceof joseErrors.JOSENotSupported) {
    return new VerifierError('malformed_token', 'malformed token');
  }
  return undefined;
}

/** Claims are shared by every caller that presents the same token: nobody may change them. */
function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const child of Object.values(v)) deepFreeze(child);
  }
  return v;
}

function finite(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

/**
 * Builds a verifier for one issuer and one audience. Options are checked here, once.
 *
 * @example
 * const verifier = createVerifier({ jwksUrl: 'https://issuer.example/.well-known/jwks.json', issuer: 'https://issuer.example', audience: 'gateway:main' });
 * const claims = await verifier.verify(token); // throws VerifierError with a stable `code`
 */
export function createVerifier(options: VerifierOptions): Verifier {
  return createVerifierFor(ACCESS_TOKEN_TYP, options);
}

/**
 * createVerifier for tokens of the given `typ`. Only `credctl token inspect` asks for another
 * type than an access token's: it verifies egress sentinels (`egress+jwt`, `aud: egress`) as the
 * signed tokens they are. A gateway never does, and the index does not export this.
 */
export function createVerifierFor(typ: TokenType, options: VerifierOptions): Verifier {
  const jwksUrl = new URL(options.jwksUrl).href;
  const issuer = requireString('issuer', options.issuer);
  const audience = requireString('audience', options.audience);
  const skew = options.clockSkew ?? DEFAULT_CLOCK_SKEW_S;
  if (typeof skew !== 'number' || !Number.isFinite(skew) || skew < 0 || skew > MAX_CLOCK_SKEW_S) {
    throw new TypeError(`createVerifier: clockSkew must be a number of seconds from 0 to ${MAX_CLOCK_SKEW_S}`);
  }
  const now = options.now ?? Date.now;
  const report = options.onEvent ?? (() => undefined);
  const doFetch = options.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));
  const cache = new TokenCache(options.tokenCache?.maxEntries ?? DEFAULT_MAX_ENTRIES);
  const jwks = createJwksCache({ url: jwksUrl, fetch: doFetch, now, options: options.jwks, report });
  jwks.onChange((kids) => {
    const dropped = cache.retainKids(kids);
    if (dropped > 0) report({ event: 'token_cache_pruned', dropped });
  });
  /** Concurrent first sightings of one token share one check. */
  const inflight = new Map<string, Promise<VerifiedClaims>>();

  const joseOptions = {
    algorithms: [...ALGORITHMS],
    issuer,
    audience,
    typ,
    clockTolerance: skew,
    requiredClaims: ['exp', 'iat', 'sub', 'jti'],
  };

  async function verifyFresh(token: string, since: number): Promise<VerifiedClaims> {
    const header = checkCompact(token, typ);
    const key = jwks.keyNow(header.kid, now()) ?? (await jwks.getKey(header.kid, since));
    const at = now();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, key, { ...joseOptions, currentDate: new Date(at) }));
    } catch (e) {
      const mapped = fromJose(e);
      if (mapped) throw mapped;
      // Not a rule we know: refuse (the token is the only input), and say so in the log.
      report({ event: 'verify_fault', error: (e as Error)?.name ?? 'unknown' });
      throw new VerifierError('malformed_token', 'malformed token');
    }
    const { exp, iat, sub, jti, aud, nbf } = payload;
    if (!finite(exp)) throw new VerifierError('exp_missing', 'exp is not a finite number');
    if (!finite(iat)) throw new VerifierError('iat_missing', 'iat is not a finite number');
    if (nbf !== undefined && !finite(nbf)) throw new VerifierError('invalid_claim', 'nbf is not a finite number');
    if (typeof aud !== 'string' || aud !== audience) throw new VerifierError('bad_audience', 'aud is not the expected single audience');
    if (typeof sub !== 'string' || sub === '') throw new VerifierError('sub_missing', 'sub missing or empty');
    if (typeof jti !== 'string' || jti === '') throw new VerifierError('jti_missing', 'jti missing or empty');
    const nowS = at / 1000;
    if (iat > nowS + skew) throw new VerifierError('iat_in_future', 'iat is in the future');
    const claims = deepFreeze(payload) as VerifiedClaims;
    // A refetch that dropped the kid while this check ran has already pruned the cache: stay out.
    if (jwks.has(header.kid)) cache.set(token, claims, header.kid, (exp + skew) * 1000, at);
    return claims;
  }

  return {
    async verify(token) {
      if (typeof token !== 'string' || token === '') throw new VerifierError('missing_token', 'no token');
      if (token.length > MAX_TOKEN_BYTES) throw new VerifierError('token_too_large', `token over ${MAX_TOKEN_BYTES} bytes`);
      const at = now();
      const since = jwks.generation();
      const hit = cache.get(token, at);
      if (hit !== undefined) {
        if (jwks.isFresh(at)) return hit;
        // A stale copy is revalidated even when every token is a cache hit, or a revoked kid would
        // live on in the cache; a refetch that drops the kid prunes its entries. Like a key lookup,
        // this waits only as jwks.ts allows (at most 0.5 s; not at all once a fetch has failed).
        await jwks.ensureUsable();
        const again = cache.get(token, now());
        if (again !== undefined) return again;
      }
      let pending = inflight.get(token);
      if (pending === undefined) {
        pending = verifyFresh(token, since).finally(() => inflight.delete(token));
        inflight.set(token, pending);
      }
      return pending;
    },
    peek(token) {
      // Only what verify() returns without waiting: a cache hit under a fresh JWKS copy. The
      // cache holds tokens that passed every check, so size and type need no second look.
      if (typeof token !== 'string') return undefined;
      const at = now();
      const hit = cache.get(token, at);
      return hit !== undefined && jwks.isFresh(at) ? hit : undefined;
    },
    refresh: () => jwks.refresh(),
    status: () => ({ jwks: jwks.status(), tokenCacheSize: cache.size }),
  };
}
