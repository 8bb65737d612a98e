/**
 * The verifier's copy of the issuer's JWKS: what jose's `createRemoteJWKSet` does not do. Every
 * limit and interval named here is defined, with its reason, in limits.ts.
 *
 * - Freshness comes from the response's `Cache-Control: max-age` (less `Age`), clamped to
 *   [minAge, maxAge], so the issuer's rotation timing (docs/architecture.md, "Timing invariants") holds and a `max-age=0` cannot
 *   turn every request into a fetch. A stale copy is revalidated with `If-None-Match`.
 * - A request whose kid is in a usable copy never waits long for a fetch: past max-age it waits for
 *   the revalidation for at most REVALIDATE_WAIT_MS (0.5 s), so that a healthy issuer's answer,
 *   and a revocation in it, counts at once; an issuer that has not answered by then is treated as
 *   failing, and the stale copy serves while the one refetch goes on in the background. Once a
 *   fetch has failed, the stale copy serves without any wait, up to `stale-if-error` (RFC 5861)
 *   after it was fetched, at most maxStale (24 h).
 * - Only a request that cannot be answered without a fetch waits for a whole one: an unknown kid,
 *   or no usable copy at all. After a successful fetch an unknown kid refetches at most once per cooldown
 *   (30 s), after a failed one at most once per RETRY_AFTER_FAILURE_MS (1 s); one fetch in flight.
 * - Failed background refetches of a stale copy that still serves are retried at most once per
 *   cooldown: nobody waits for them.
 * - At most MAX_JWKS_KEYS keys are kept, the first ones in document order; the rest are reported
 *   (one event) and counted in the status. A body over MAX_JWKS_BYTES is a failed fetch.
 * - The fetch in flight is waited for until its deadline (its time limit + FLIGHT_GRACE_MS), each
 *   waiter timing its own wait: on Workers a fetch started by a request that has ended may never
 *   settle. Past the deadline it is given up as a failed fetch, and a waiter fetches for itself.
 *
 * Keys are selected and imported by jose's `createLocalJWKSet` over the copy (it caches the
 * imported CryptoKey per key). Only WebCrypto, `fetch` and `setTimeout`: runs in Node and in Workers.
 */
import { createLocalJWKSet, type JWK } from 'jose';
import { readBoundedText } from '../bounded-body.js';
import { VerifierError } from './errors.js';
import {
  DEFAULT_AGE_S,
  DEFAULT_COOLDOWN_S,
  DEFAULT_MAX_AGE_S,
  DEFAULT_MAX_STALE_S,
  DEFAULT_MIN_AGE_S,
  DEFAULT_TIMEOUT_S,
  MAX_JWKS_BYTES,
  MAX_JWKS_KEYS,
  RETRY_AFTER_FAILURE_MS,
  REVALIDATE_WAIT_MS,
} from './limits.js';

export interface JwksOptions {
  /** Lower bound on how long a copy is fresh, whatever max-age says. Default 10 s. */
  minAgeSeconds?: number;
  /** Upper bound on how long a copy is fresh. Default 1 h. */
  maxAgeSeconds?: number;
  /** Freshness when the response has no usable max-age. Default 300 s, the issuer's default. */
  defaultAgeSeconds?: number;
  /** Least time between two refetches caused by unknown kids after a successful fetch, and between failed background refetches. Default 30 s. */
  cooldownSeconds?: number;
  /** How long the last good copy serves while fetches fail, at most (a smaller `stale-if-error` wins). Default 24 h. */
  maxStaleSeconds?: number;
  /** One fetch's time limit. Default 5 s. */
  timeoutSeconds?: number;
  /** Largest JWKS body accepted. Default MAX_JWKS_BYTES (256 KiB). */
  maxBytes?: number;
}

export type JwksEvent =
  | { event: 'jwks_fetched'; status: 200 | 304; kids: number; fresh_for_s: number; reason: FetchReason }
  | { event: 'jwks_fetch_failed'; reason: FetchReason; error: string; serving_stale: boolean }
  /** One key skipped (with its kid), or, with `dropped`, that many keys past MAX_JWKS_KEYS. */
  | { event: 'jwks_key_ignored'; kid?: string; why: string; dropped?: number };

/** `expired`: a stale copy is revalidated (with the bounded wait, or in the background after a failure). */
type FetchReason = 'initial' | 'expired' | 'unknown_kid' | 'manual';

export interface JwksStatus {
  /** Seconds since the copy in use was fetched or revalidated; null before the first good fetch. */
  ageSeconds: number | null;
  /** True while the copy is within its max-age. */
  fresh: boolean;
  /** True while tokens can be checked: a copy exists and is within its stale-if-error limit. */
  usable: boolean;
  /** True while a fetch is in flight. */
  refreshing: boolean;
  kids: string[];
  /** Keys of the copy in use past MAX_JWKS_KEYS, ignored. */
  droppedKeys: number;
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
  droppedKeys: number;
  /** When this content was last confirmed by the issuer (200 or 304). */
  checkedAt: number;
  freshUntil: number;
  /** Until then the copy serves when fetches fail (stale-if-error); past it, jwks_unavailable. */
  usableUntil: number;
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

/**
 * How long past its time limit a fetch is still waited for. In Node the fetch's AbortSignal.timeout
 * always ends it in time. On Workers a fetch belongs to the request that started it: once that
 * request has ended (client gone, request cancelled), its I/O may never complete, and the fetch's
 * promise then never settles, for every request that joined it too (jose's createRemoteJWKSet
 * shares no pending fetch on Workers for this reason; here one fetch in flight is kept, with a
 * deadline). So every waiter times its own wait, and a fetch not settled by its deadline is given
 * up: counted as a failed fetch, its late outcome ignored, no longer the fetch in flight. A waiter
 * that gave one up then fetches for itself, not joining a fetch another waiter started meanwhile:
 * that request may have ended too (workerd still runs an ended request's timers, but I/O it starts
 * then may never complete).
 */
const FLIGHT_GRACE_MS = 1_000;

function jwksSettings(o: JwksOptions = {}): Settings {
  const s: Settings = {
    minAge: seconds('minAgeSeconds', o.minAgeSeconds, DEFAULT_MIN_AGE_S),
    maxAge: seconds('maxAgeSeconds', o.maxAgeSeconds, DEFAULT_MAX_AGE_S),
    defaultAge: seconds('defaultAgeSeconds', o.defaultAgeSeconds, DEFAULT_AGE_S),
    cooldown: seconds('cooldownSeconds', o.cooldownSeconds, DEFAULT_COOLDOWN_S),
    maxStale: seconds('maxStaleSeconds', o.maxStaleSeconds, DEFAULT_MAX_STALE_S),
    timeout: seconds('timeoutSeconds', o.timeoutSeconds, DEFAULT_TIMEOUT_S, 0.001),
    maxBytes: o.maxBytes ?? MAX_JWKS_BYTES,
  };
  if (s.minAge > s.maxAge) throw new TypeError('jwks.minAgeSeconds must not exceed jwks.maxAgeSeconds');
  if (!Number.isInteger(s.maxBytes) || s.maxBytes < 1) throw new TypeError('jwks.maxBytes must be a positive integer');
  return s;
}

/** Cache-Control directives by lower-case name; a value of `""` for a directive without one. */
function directives(headers: Headers): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (headers.get('cache-control') ?? '').split(',')) {
    const [rawName, rawValue] = part.split('=', 2) as [string, string | undefined];
    const name = rawName.trim().toLowerCase();
    if (name !== '' && !out.has(name)) out.set(name, (rawValue ?? '').trim().replace(/^"(.*)"$/, '$1'));
  }
  return out;
}

function deltaSeconds(v: string | undefined): number | undefined {
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
}

/** Freshness lifetime in ms from Cache-Control and Age (RFC 9111 §4.2.1, §4.2.3), before clamping. */
export function freshnessOf(headers: Headers, fallbackMs: number): number {
  if (headers.get('cache-control') === null) return fallbackMs;
  const d = directives(headers);
  if (d.has('no-store') || d.has('no-cache')) return 0;
  const maxAge = deltaSeconds(d.get('max-age'));
  if (maxAge === undefined) return fallbackMs;
  const ageHeader = headers.get('age');
  const age = ageHeader !== null && /^\d+$/.test(ageHeader.trim()) ? Number(ageHeader.trim()) : 0;
  return Math.max(0, maxAge - age) * 1000;
}

/**
 * RFC 5861 `stale-if-error` in ms, `fallbackMs` when absent. (`stale-while-revalidate` is not used:
 * a stale copy is always revalidated first, for a bounded time, so that revocations count at
 * max-age; see REVALIDATE_WAIT_MS.)
 */
function staleIfErrorOf(headers: Headers, fallbackMs: number): number {
  const sie = deltaSeconds(directives(headers).get('stale-if-error'));
  return sie === undefined ? fallbackMs : sie * 1000;
}

/** Why a JWKS entry is not a usable Ed25519 verification key, or null when it is one. */
function unusable(k: unknown): string | null {
  if (typeof k !== 'object' || k === null) return 'not an object';
  const jwk = k as Record<string, unknown>;
  return jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519'
    ? 'not an Ed25519 key'
    : typeof jwk.x !== 'string'
      ? 'no x'
      : jwk.d !== undefined
        ? 'private key material'
        : typeof jwk.kid !== 'string' || jwk.kid === ''
          ? 'no kid'
          : jwk.use !== undefined && jwk.use !== 'sig'
            ? 'use is not sig'
            : jwk.alg !== undefined && jwk.alg !== 'EdDSA' && jwk.alg !== 'Ed25519'
              ? 'alg is not EdDSA'
              : jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))
                ? 'key_ops without verify'
                : null;
}

/**
 * Keeps the Ed25519 signing keys among the first `maxKeys` (MAX_JWKS_KEYS) entries of a JWKS
 * document, in document order: the issuer publishes the keys that can sign first. Anything else
 * among them is reported and skipped, so one odd key does not take the others down; entries past
 * the limit are dropped and reported once, with their number, instead of failing the whole JWKS.
 * A document that is not `{keys: [...]}` is an error.
 */
function usableKeys(doc: unknown, report: (e: JwksEvent) => void, maxKeys = MAX_JWKS_KEYS): { keys: JWK[]; dropped: number } {
  if (typeof doc !== 'object' || doc === null || !Array.isArray((doc as { keys?: unknown }).keys)) throw new Error('not a JWK Set');
  const all = (doc as { keys: unknown[] }).keys;
  const dropped = Math.max(0, all.length - maxKeys);
  if (dropped > 0) report({ event: 'jwks_key_ignored', why: `over the limit of ${maxKeys} keys`, dropped });
  // Two keys under one kid make the choice of key ambiguous: use neither, even when one of them is
  // past the limit (the body is bounded in bytes, so this pass is too).
  const seen = new Map<string, number>();
  for (const k of all) {
    if (unusable(k) === null) {
      const kid = (k as { kid: string }).kid;
      seen.set(kid, (seen.get(kid) ?? 0) + 1);
    }
  }
  const out: JWK[] = [];
  for (const k of all.slice(0, maxKeys)) {
    const kid = typeof (k as { kid?: unknown } | null)?.kid === 'string' ? (k as { kid: string }).kid : undefined;
    const why = unusable(k) ?? (seen.get(kid!) !== 1 ? 'duplicate kid' : null);
    if (why) {
      report({ event: 'jwks_key_ignored', kid, why });
      continue;
    }
    // jose picks by kid and alg; the key's own alg would hide it from an `Ed25519` token header.
    out.push({ kty: 'OKP', crv: 'Ed25519', x: (k as { x: string }).x, kid: kid!, use: 'sig' });
  }
  return { keys: out, dropped };
}

export interface JwksCache {
  /**
   * The verification key for `kid`; fetches as the rules above allow. Throws a VerifierError.
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
  /** Fetch now (no interval applies; joins a fetch in flight); resolves once the fetch has settled. */
  refresh(): Promise<void>;
  /** True while the copy is within its max-age: a number compare. */
  isFresh(now: number): boolean;
  /**
   * What getKey does before it looks at the kid: a stale copy is revalidated (a wait of at most
   * REVALIDATE_WAIT_MS, none after a failure); waits for a whole fetch only when there is no usable
   * copy, and then throws jwks_unavailable if the fetch does not give one.
   */
  ensureUsable(): Promise<void>;
  status(): JwksStatus;
  /** Called with the kids of each new copy (not on a 304). */
  onChange(listener: (kids: ReadonlySet<string>) => void): void;
}

interface Flight {
  /** Settles (never rejects) when the fetch has. */
  done: Promise<void>;
  reason: FetchReason;
  /** Counts fetches started: a larger one started later. */
  seq: number;
  /** Date.now() past which nobody waits for it (see FLIGHT_GRACE_MS). */
  deadline: number;
  /** Set once given up at its deadline: whatever the fetch brings later is ignored. */
  abandoned: boolean;
  /** Date.now() at which the bounded wait ends for every caller: REVALIDATE_WAIT_MS after the first that waits. */
  boundedUntil?: number;
}

/**
 * Whether `p` settles within `ms`. The timer is the caller's own: it fires even when the request
 * that started `p` has ended and `p` never settles (see FLIGHT_GRACE_MS).
 */
function settlesWithin(p: Promise<void>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), Math.max(0, ms));
    void p.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
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
  let flight: Flight | undefined;
  /** When the last fetch started, whatever its reason or outcome. */
  let lastAttemptAt = -Infinity;
  /** When the last fetch caused by an unknown kid started. */
  let lastUnknownKidFetch = -Infinity;
  /** Whether the last fetch that settled failed. */
  let failing = false;
  let lastError: string | null = null;
  let fetches = 0;
  let failures = 0;
  /** Counts successful fetches (200 or 304). */
  let generation = 0;
  /** The seq of the last fetch started, and the largest among the fetches that have settled. */
  let lastSeq = 0;
  let settledSeq = 0;
  /**
   * The seq of the fetch whose outcome the state shows: an older fetch that settles later (two can
   * run once a waiter fetches for itself) records nothing.
   */
  let recordedSeq = 0;

  function windows(res: Response, now: number, life: number): Pick<Snapshot, 'checkedAt' | 'freshUntil' | 'usableUntil'> {
    return { checkedAt: now, freshUntil: now + life, usableUntil: now + Math.min(staleIfErrorOf(res.headers, s.maxStale), s.maxStale) };
  }

  async function fetchOnce(reason: FetchReason, f: Flight): Promise<void> {
    fetches++;
    const headers: Record<string, string> = { accept: 'application/jwk-set+json, application/json' };
    if (current?.etag) headers['if-none-match'] = current.etag;
    try {
      const res = await deps.fetch(deps.url, { headers, redirect: 'manual', signal: AbortSignal.timeout(s.timeout) });
      if (outdated(f)) {
        await res.body?.cancel();
        return;
      }
      const now = deps.now();
      const life = Math.min(s.maxAge, Math.max(s.minAge, freshnessOf(res.headers, s.defaultAge)));
      if (res.status === 304 && current) {
        await res.body?.cancel();
        if (outdated(f)) return;
        recordedSeq = f.seq;
        current = { ...current, ...windows(res, now, life) };
        generation++;
        failing = false;
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
      if (outdated(f)) return;
      recordedSeq = f.seq;
      const { keys, dropped } = usableKeys(doc, report);
      const kids = new Set(keys.map((k) => k.kid!));
      current = {
        kids,
        getKey: createLocalJWKSet({ keys }),
        imported: new Map(),
        etag: res.headers.get('etag'),
        droppedKeys: dropped,
        ...windows(res, now, life),
      };
      generation++;
      failing = false;
      lastError = null;
      report({ event: 'jwks_fetched', status: 200, kids: kids.size, fresh_for_s: life / 1000, reason });
      for (const l of listeners) l(kids);
    } catch (e) {
      // (This fetch itself may have recorded a success before the throw: its failure stands then.)
      if (f.abandoned || f.seq < recordedSeq) return;
      recordedSeq = f.seq;
      failures++;
      failing = true;
      const err = e as Error;
      lastError = err.name === 'TimeoutError' ? 'timeout' : err.message.slice(0, 200);
      report({ event: 'jwks_fetch_failed', reason, error: lastError, serving_stale: usable(deps.now()) });
    }
  }

  function usable(now: number): boolean {
    return current !== undefined && now <= current.usableUntil;
  }

  /** Whether `f`'s outcome must not be recorded: given up, or a later fetch's is recorded already. */
  function outdated(f: Flight): boolean {
    return f.abandoned || f.seq <= recordedSeq;
  }

  /** Gives `f` up (see FLIGHT_GRACE_MS): a failed fetch, and no longer the one in flight. */
  function abandon(f: Flight): void {
    if (f.abandoned) return;
    f.abandoned = true;
    if (flight === f) flight = undefined;
    if (f.seq <= recordedSeq) return;
    recordedSeq = f.seq;
    failures++;
    failing = true;
    lastError = 'not settled by its deadline';
    report({ event: 'jwks_fetch_failed', reason: f.reason, error: lastError, serving_stale: usable(deps.now()) });
  }

  /** The fetch in flight, unless it is past its deadline: that one is given up. */
  function inFlight(): Flight | undefined {
    if (flight && Date.now() >= flight.deadline) abandon(flight);
    return flight;
  }

  /**
   * One fetch at a time: a caller that finds one running joins it instead, unless it fetches for
   * itself (`own`, see settle); that fetch becomes the one in flight.
   */
  function startFetch(reason: FetchReason, own = false): Flight {
    const running = inFlight();
    if (running && !own) return running;
    lastAttemptAt = deps.now();
    const f: Flight = {
      done: Promise.resolve(),
      reason,
      seq: ++lastSeq,
      deadline: Date.now() + s.timeout + FLIGHT_GRACE_MS,
      abandoned: false,
    };
    // fetchOnce records its own failures; it rejects only if an event listener throws, which must
    // not become an unhandled rejection of a background fetch.
    f.done = fetchOnce(reason, f).catch(() => undefined);
    flight = f;
    void f.done.finally(() => {
      settledSeq = Math.max(settledSeq, f.seq);
      if (flight === f) flight = undefined;
    });
    return f;
  }

  /**
   * Waits for `f` until it settles or its deadline. Past the deadline `f` is given up (it most likely
   * belonged to a request that has ended) and, unless a later fetch has settled meanwhile, this
   * caller fetches for itself (see FLIGHT_GRACE_MS) and waits for that one the same way. Its
   * deadline is past RETRY_AFTER_FAILURE_MS, so this is no more often than a retry after a failure.
   */
  async function settle(f: Flight): Promise<void> {
    if (await settlesWithin(f.done, f.deadline - Date.now())) return;
    abandon(f);
    if (settledSeq > f.seq) return;
    const own = startFetch(f.reason, true);
    if (!(await settlesWithin(own.done, own.deadline - Date.now()))) abandon(own);
  }

  /** Waits for `f`, for at most REVALIDATE_WAIT_MS in all (the wait is shared by every caller). */
  async function bounded(f: Flight): Promise<void> {
    f.boundedUntil ??= Date.now() + REVALIDATE_WAIT_MS;
    await settlesWithin(f.done, f.boundedUntil - Date.now());
  }

  /** A copy to look the kid up in, waiting only as the rules at the top allow. */
  async function usableCopy(): Promise<Snapshot> {
    const now = deps.now();
    if (current && now < current.freshUntil) return current;
    if (current && usable(now)) {
      // Stale but in service: revalidate. After a failure, at most once per cooldown, and nobody waits.
      const f = inFlight() ?? (!failing || now - lastAttemptAt >= s.cooldown ? startFetch('expired') : undefined);
      if (f && !failing) await bounded(f);
      if (usable(deps.now())) return current;
    }
    // No usable copy: every request is refused until a fetch succeeds, so wait for one, started at
    // most once per RETRY_AFTER_FAILURE_MS (never per request).
    const running = inFlight();
    if (running) await settle(running);
    else if (now - lastAttemptAt >= RETRY_AFTER_FAILURE_MS) await settle(startFetch(current ? 'expired' : 'initial'));
    if (!current || !usable(deps.now())) {
      throw new VerifierError('jwks_unavailable', current ? 'JWKS copy older than its stale-if-error limit' : 'no JWKS fetched yet');
    }
    return current;
  }

  /** Whether an unknown kid may cause a fetch now (see DEFAULT_COOLDOWN_S and RETRY_AFTER_FAILURE_MS). */
  function unknownKidFetchDue(now: number): boolean {
    return failing ? now - lastAttemptAt >= RETRY_AFTER_FAILURE_MS : now - lastUnknownKidFetch >= s.cooldown;
  }

  return {
    async getKey(kid, since = generation) {
      let snap = await usableCopy();
      if (!snap.kids.has(kid)) {
        // This request cannot be answered without a newer copy: it waits, for one fetch at most.
        const now = deps.now();
        const running = inFlight();
        if (running) await settle(running);
        // A copy confirmed since this lookup began is as new as a refetch would be.
        else if (generation === since && unknownKidFetchDue(now)) {
          lastUnknownKidFetch = now;
          await settle(startFetch('unknown_kid'));
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
      if (current === undefined || now >= current.freshUntil) return undefined;
      return current.imported.get(kid);
    },
    has: (kid) => current?.kids.has(kid) === true,
    refresh: () => settle(startFetch('manual')),
    generation: () => generation,
    isFresh: (now) => current !== undefined && now < current.freshUntil,
    async ensureUsable() {
      await usableCopy();
    },
    status() {
      const now = deps.now();
      return {
        ageSeconds: current ? Math.max(0, Math.floor((now - current.checkedAt) / 1000)) : null,
        fresh: current !== undefined && now < current.freshUntil,
        usable: usable(now),
        refreshing: flight !== undefined && Date.now() < flight.deadline,
        kids: current ? [...current.kids] : [],
        droppedKeys: current?.droppedKeys ?? 0,
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
