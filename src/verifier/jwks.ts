/**
 * The verifier's copy of the issuer's JWKS: what jose's `createRemoteJWKSet` does not do.
 *
 * - Freshness comes from the response's `Cache-Control: max-age` (less `Age`), clamped to
 *   [minAge, maxAge], so the issuer's rotation timing (DESIGN §5) holds and a `max-age=0` cannot
 *   turn every request into a fetch.
 * - A stale copy is revalidated with `If-None-Match`; every caller waits for one shared fetch.
 * - A kid that is not in the copy triggers a refetch at most once per cooldown (30 s), with one
 *   fetch in flight: a flood of made-up kids costs the issuer one request per cooldown.
 * - A failed fetch keeps the last good copy in service until it is `maxStale` (24 h) old, the
 *   `stale-if-error` the issuer advertises; failed fetches are retried at most once per cooldown.
 *
 * Keys are selected and imported by jose's `createLocalJWKSet` over the copy (it caches the
 * imported CryptoKey per key). Only WebCrypto and `fetch`: runs in Node and in Workers.
 */
import { createLocalJWKSet, type JWK } from 'jose';
import { readBoundedText } from '../bounded-body.js';
import { VerifierError } from './errors.js';

export interface JwksOptions {
  /** Lower bound on how long a copy is fresh, whatever max-age says. Default 10 s. */
  minAgeSeconds?: number;
  /** Upper bound on how long a copy is fresh. Default 1 h. */
  maxAgeSeconds?: number;
  /** Freshness when the response has no usable max-age. Default 300 s, the issuer's default. */
  defaultAgeSeconds?: number;
  /** Least time between two refetches caused by unknown kids, or after a failed fetch. Default 30 s. */
  cooldownSeconds?: number;
  /** How long the last good copy serves while fetches fail. Default 24 h. */
  maxStaleSeconds?: number;
  /** One fetch's time limit. Default 5 s. */
  timeoutSeconds?: number;
  /** Largest JWKS body accepted. Default 64 KiB. */
  maxBytes?: number;
}

/** Ten seconds: short enough for any sane issuer setting, long enough that `max-age=0` is not a fetch per request. */
export const DEFAULT_MIN_AGE_S = 10;
/** One hour: a verifier rechecks at least this often even if the issuer asks for longer. */
export const DEFAULT_MAX_AGE_S = 3_600;
/** The issuer's own default JWKS max-age (DESIGN §5). */
export const DEFAULT_AGE_S = 300;
/** DESIGN §4: unknown-kid refetches at most once per 30 s. */
export const DEFAULT_COOLDOWN_S = 30;
/** DESIGN §4 and the issuer's `stale-if-error=86400`. */
export const DEFAULT_MAX_STALE_S = 86_400;
/** Five seconds: callers wait for a fetch of a stale copy, so it must not hang for long. */
export const DEFAULT_TIMEOUT_S = 5;
/** A JWKS of a few Ed25519 keys is under 1 KiB; 64 KiB leaves room and caps the memory an issuer fault can take. */
export const DEFAULT_MAX_BYTES = 64 * 1024;
/**
 * With no copy at all every request is refused, so recovery should be quick; but an issuer that
 * is down must not get one fetch per request. One attempt per second, whatever the traffic.
 */
export const FIRST_FETCH_RETRY_MS = 1_000;
/** Keys beyond this many are ignored: the issuer publishes three (next, active, retiring). */
export const MAX_KEYS = 100;

export type JwksEvent =
  | { event: 'jwks_fetched'; status: 200 | 304; kids: number; fresh_for_s: number; reason: FetchReason }
  | { event: 'jwks_fetch_failed'; reason: FetchReason; error: string; serving_stale: boolean }
  | { event: 'jwks_key_ignored'; kid?: string; why: string };

export type FetchReason = 'initial' | 'expired' | 'unknown_kid' | 'manual';

export interface JwksStatus {
  /** Seconds since the copy in use was fetched or revalidated; null before the first good fetch. */
  ageSeconds: number | null;
  /** True while the copy is within its max-age. */
  fresh: boolean;
  /** True while tokens can be checked: a copy exists and is within the stale limit. */
  usable: boolean;
  kids: string[];
  lastError: string | null;
  fetches: number;
  failures: number;
}

interface Snapshot {
  kids: ReadonlySet<string>;
  getKey: ReturnType<typeof createLocalJWKSet>;
  /** Keys jose has already selected and imported, by kid: the hot path skips the selection. */
  imported: Map<string, CryptoKey>;
  etag: string | null;
  /** When this content was last confirmed by the issuer (200 or 304). */
  checkedAt: number;
  freshUntil: number;
}

interface Settings {
  minAge: number;
  maxAge: number;
  defaultAge: number;
  cooldown: number;
  maxStale: number;
  timeout: number;
  maxBytes: number;
}

function seconds(name: string, v: number | undefined, fallback: number, min = 0): number {
  if (v === undefined) return fallback * 1000;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min) throw new TypeError(`jwks.${name} must be a finite number >= ${min}`);
  return v * 1000;
}

export function jwksSettings(o: JwksOptions = {}): Settings {
  const s: Settings = {
    minAge: seconds('minAgeSeconds', o.minAgeSeconds, DEFAULT_MIN_AGE_S),
    maxAge: seconds('maxAgeSeconds', o.maxAgeSeconds, DEFAULT_MAX_AGE_S),
    defaultAge: seconds('defaultAgeSeconds', o.defaultAgeSeconds, DEFAULT_AGE_S),
    cooldown: seconds('cooldownSeconds', o.cooldownSeconds, DEFAULT_COOLDOWN_S),
    maxStale: seconds('maxStaleSeconds', o.maxStaleSeconds, DEFAULT_MAX_STALE_S),
    timeout: seconds('timeoutSeconds', o.timeoutSeconds, DEFAULT_TIMEOUT_S, 0.001),
    maxBytes: o.maxBytes ?? DEFAULT_MAX_BYTES,
  };
  if (s.minAge > s.maxAge) throw new TypeError('jwks.minAgeSeconds must not exceed jwks.maxAgeSeconds');
  if (!Number.isInteger(s.maxBytes) || s.maxBytes < 1) throw new TypeError('jwks.maxBytes must be a positive integer');
  return s;
}

/** Freshness lifetime in ms from Cache-Control and Age (RFC 9111 §4.2.1, §4.2.3), before clamping. */
export function freshnessOf(headers: Headers, fallbackMs: number): number {
  const cc = headers.get('cache-control');
  if (cc === null) return fallbackMs;
  let maxAge: number | undefined;
  for (const part of cc.split(',')) {
    const [rawName, rawValue] = part.split('=', 2) as [string, string | undefined];
    const name = rawName.trim().toLowerCase();
    if (name === 'no-store' || name === 'no-cache') return 0;
    if (name === 'max-age' && rawValue !== undefined) {
      const v = rawValue.trim().replace(/^"(.*)"$/, '$1');
      if (/^\d+$/.test(v)) maxAge = Number(v);
    }
  }
  if (maxAge === undefined) return fallbackMs;
  const ageHeader = headers.get('age');
  const age = ageHeader !== null && /^\d+$/.test(ageHeader.trim()) ? Number(ageHeader.trim()) : 0;
  return Math.max(0, maxAge - age) * 1000;
}

/**
 * Keeps the Ed25519 signing keys of a JWKS document; anything else is reported and skipped, so
 * one odd key does not take the others down. A document that is not `{keys: [...]}` is an error.
 */
export function usableKeys(doc: unknown, report: (e: JwksEvent) => void): JWK[] {
  if (typeof doc !== 'object' || doc === null || !Array.isArray((doc as { keys?: unknown }).keys)) throw new Error('not a JWK Set');
  const out: JWK[] = [];
  const seen = new Map<string, number>();
  for (const k of ((doc as { keys: unknown[] }).keys).slice(0, MAX_KEYS)) {
    const jwk = k as Record<string, unknown>;
    const kid = typeof jwk?.kid === 'string' ? jwk.kid : undefined;
    const why =
      typeof k !== 'object' || k === null ? 'not an object'
      : jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' ? 'not an Ed25519 key'
      : typeof jwk.x !== 'string' ? 'no x'
      : jwk.d !== undefined ? 'private key material'
      : !kid ? 'no kid'
      : jwk.use !== undefined && jwk.use !== 'sig' ? 'use is not sig'
      : jwk.alg !== undefined && jwk.alg !== 'EdDSA' && jwk.alg !== 'Ed25519' ? 'alg is not EdDSA'
      : jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify')) ? 'key_ops without verify'
      : null;
    if (why) {
      report({ event: 'jwks_key_ignored', kid, why });
      continue;
    }
    seen.set(kid!, (seen.get(kid!) ?? 0) + 1);
    // jose picks by kid and alg; the key's own alg would hide it from an `Ed25519` token header.
    out.push({ kty: 'OKP', crv: 'Ed25519', x: jwk.x as string, kid: kid!, use: 'sig' });
  }
  // Two keys under one kid would make the choice of key ambiguous: use neither.
  return out.filter((k) => {
    if (seen.get(k.kid!) === 1) return true;
    report({ event: 'jwks_key_ignored', kid: k.kid, why: 'duplicate kid' });
    return false;
  });
}

export interface JwksCache {
  /**
   * The verification key for `kid`; refetches as the rules above allow. Throws a VerifierError.
   * `since` (from generation()) marks when the caller began: a copy confirmed after that is as
   * new as an unknown-kid refetch would be, so none is made.
   */
  getKey(kid: string, since?: number): Promise<CryptoKey>;
  /** Counts successful fetches (200 or 304). */
  generation(): number;
  /** The key for `kid` without waiting, when the copy is fresh and the key already imported. */
  keyNow(kid: string, now: number): CryptoKey | undefined;
  /** Whether the copy in use publishes `kid`. */
  has(kid: string): boolean;
  /** Fetch now (the cooldown does not apply); resolves once the fetch has settled. */
  refresh(): Promise<void>;
  /** True while the copy is within its max-age and no fetch is running: a number compare. */
  isFresh(now: number): boolean;
  /** Revalidates a stale copy as getKey would; throws jwks_unavailable when there is no usable copy. */
  ensureFresh(): Promise<void>;
  status(): JwksStatus;
  /** Called with the kids of each new copy (not on a 304). */
  onChange(listener: (kids: ReadonlySet<string>) => void): void;
}

export function createJwksCache(deps: {
  url: string;
  fetch: typeof fetch;
  now: () => number;
  options?: JwksOptions;
  report?: (e: JwksEvent) => void;
}): JwksCache {
  const s = jwksSettings(deps.options);
  const report = deps.report ?? (() => undefined);
  const listeners: ((kids: ReadonlySet<string>) => void)[] = [];
  let current: Snapshot | undefined;
  let inflight: Promise<void> | undefined;
  let lastUnknownKidFetch = -Infinity;
  let lastFailureAt = -Infinity;
  let lastError: string | null = null;
  let fetches = 0;
  let failures = 0;
  /** Counts successful fetches (200 or 304). */
  let generation = 0;

  async function fetchOnce(reason: FetchReason): Promise<void> {
    fetches++;
    const headers: Record<string, string> = { accept: 'application/jwk-set+json, application/json' };
    if (current?.etag) headers['if-none-match'] = current.etag;
    try {
      const res = await deps.fetch(deps.url, { headers, redirect: 'manual', signal: AbortSignal.timeout(s.timeout) });
      const now = deps.now();
      const life = Math.min(s.maxAge, Math.max(s.minAge, freshnessOf(res.headers, s.defaultAge)));
      if (res.status === 304 && current) {
        await res.body?.cancel();
        current = { ...current, checkedAt: now, freshUntil: now + life };
        generation++;
        lastError = null;
        report({ event: 'jwks_fetched', status: 304, kids: current.kids.size, fresh_for_s: life / 1000, reason });
        return;
      }
      if (res.status !== 200) {
        await res.body?.cancel();
        throw new Error(`HTTP ${res.status}`);
      }
      let doc: unknown;
      try {
        doc = JSON.parse(await readBoundedText(res.body, res.headers.get('content-length'), s.maxBytes));
      } catch (e) {
        // SyntaxError messages quote the body; the log gets the kind of fault only.
        throw new Error(e instanceof SyntaxError ? 'not JSON' : (e as Error).message);
      }
      const keys = usableKeys(doc, report);
      const kids = new Set(keys.map((k) => k.kid!));
      current = { kids, getKey: createLocalJWKSet({ keys }), imported: new Map(), etag: res.headers.get('etag'), checkedAt: now, freshUntil: now + life };
      generation++;
      lastError = null;
      report({ event: 'jwks_fetched', status: 200, kids: kids.size, fresh_for_s: life / 1000, reason });
      for (const l of listeners) l(kids);
    } catch (e) {
      failures++;
      lastFailureAt = deps.now();
      const err = e as Error;
      lastError = err.name === 'TimeoutError' ? 'timeout' : err.message.slice(0, 200);
      report({ event: 'jwks_fetch_failed', reason, error: lastError, serving_stale: usable(deps.now()) });
    }
  }

  function usable(now: number): boolean {
    return current !== undefined && now - current.checkedAt <= s.maxStale;
  }

  /** One fetch at a time: a caller that finds one running waits for it instead. */
  function fetchShared(reason: FetchReason): Promise<void> {
    inflight ??= fetchOnce(reason).finally(() => {
      inflight = undefined;
    });
    return inflight;
  }

  async function ensureUsable(): Promise<Snapshot> {
    const now = deps.now();
    if (inflight) await inflight;
    else if (!current) {
      if (now - lastFailureAt >= FIRST_FETCH_RETRY_MS) await fetchShared('initial');
    } else if (now >= current.freshUntil && now - lastFailureAt >= s.cooldown) await fetchShared('expired');
    if (!current || !usable(deps.now())) {
      throw new VerifierError('jwks_unavailable', current ? 'JWKS copy older than the stale limit' : 'no JWKS fetched yet');
    }
    return current;
  }

  return {
    async getKey(kid, since = generation) {
      let snap = await ensureUsable();
      if (!snap.kids.has(kid)) {
        const now = deps.now();
        if (inflight) await inflight;
        // A copy confirmed since this lookup began is as new as a refetch would be.
        else if (generation === since && now - lastUnknownKidFetch >= s.cooldown) {
          lastUnknownKidFetch = now;
          await fetchShared('unknown_kid');
        }
        snap = current!;
        if (!snap.kids.has(kid) || !usable(deps.now())) throw new VerifierError('unknown_kid', 'kid not in the JWKS');
      }
      // jose chooses among the copy's keys by kid; `EdDSA` matches them whichever name the token uses.
      const key = (await snap.getKey({ alg: 'EdDSA', kid })) as CryptoKey;
      snap.imported.set(kid, key);
      return key;
    },
    keyNow(kid, now) {
      if (current === undefined || inflight !== undefined || now >= current.freshUntil) return undefined;
      return current.imported.get(kid);
    },
    has: (kid) => current?.kids.has(kid) === true,
    refresh: () => fetchShared('manual'),
    generation: () => generation,
    isFresh: (now) => current !== undefined && now < current.freshUntil && inflight === undefined,
    async ensureFresh() {
      await ensureUsable();
    },
    status() {
      const now = deps.now();
      return {
        ageSeconds: current ? Math.max(0, Math.floor((now - current.checkedAt) / 1000)) : null,
        fresh: current !== undefined && now < current.freshUntil,
        usable: usable(now),
        kids: current ? [...current.kids] : [],
        lastError,
        fetches,
        failures,
      };
    },
    onChange(listener) {
      listeners.push(listener);
    },
  };
}
