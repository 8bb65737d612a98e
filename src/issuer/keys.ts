/**
 * Signing-key lifecycle, as pure functions over a KeySet: next -> active -> retiring -> removed.
 *
 * - `next` is published and does not sign; it becomes active at the next rotation, one rotation
 *   period later, so every verifier has had JWKS_MAX_AGE + CLOCK_SKEW to learn it (config.ts checks).
 * - `active` is published and signs. Exactly one at a time.
 * - `retiring` is published and does not sign; it is removed `retentionSeconds` after it stopped
 *   signing, once every token it signed has expired and every cached JWKS has expired too.
 * - `removed` keeps only the public half and times, for the operator's history.
 *
 * Time comes in as `now` (epoch milliseconds); nothing here reads a clock or storage.
 */
import { calculateJwkThumbprint, type JWK } from 'jose';
import type { KeyState, KeyView } from '../admin-api.js';
import { IssuerError } from './errors.js';
import { MAX_RETIRING_KEYS } from './jwks-bounds.js';
import { retentionSeconds, type Timing } from './key-timing.js';
import type { StoredPrivateKey } from './key-wrap.js';

/** A key as published in the JWKS. */
export interface PublicJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
  kid: string;
  alg: 'EdDSA';
  use: 'sig';
}

export interface KeyRecord {
  kid: string;
  state: KeyState;
  publicJwk: PublicJwk;
  createdAt: number;
  activatedAt?: number;
  retiredAt?: number;
  /** When a retiring key leaves the JWKS. */
  removeAt?: number;
  removedAt?: number;
  removedReason?: 'expired' | 'revoked';
  /** Absent once the key is removed: a removed key can never sign again. */
  privateKey?: StoredPrivateKey;
}

export interface KeySet {
  keys: KeyRecord[];
  /** When the scheduled rotation is due. */
  rotateAt: number;
}

/** A freshly generated key pair, not yet part of a set. */
export interface NewKey {
  kid: string;
  publicJwk: PublicJwk;
  privateJwk: JWK;
}

/** Removed keys kept for the operator's view; older ones are forgotten. */
export const REMOVED_HISTORY = 10;

const SECOND = 1000;

/** Generates an Ed25519 key pair with kid = RFC 7638 thumbprint of the public key. */
export async function generateKey(): Promise<NewKey> {
  const pair = (await crypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify'])) as CryptoKeyPair;
  const priv = (await crypto.subtle.exportKey('jwk', pair.privateKey)) as JsonWebKey;
  if (typeof priv.x !== 'string' || typeof priv.d !== 'string') throw new Error('Ed25519 export gave no x/d');
  const kid = await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: priv.x }, 'sha256');
  const publicJwk: PublicJwk = { kty: 'OKP', crv: 'Ed25519', x: priv.x, kid, alg: 'EdDSA', use: 'sig' };
  const privateJwk: JWK = { kty: 'OKP', crv: 'Ed25519', x: priv.x, d: priv.d, kid, alg: 'EdDSA', use: 'sig' };
  return { kid, publicJwk, privateJwk };
}

function record(key: NewKey, privateKey: StoredPrivateKey, state: KeyState, now: number): KeyRecord {
  return { kid: key.kid, state, publicJwk: key.publicJwk, createdAt: now, privateKey };
}

/** The first key set: one active key (signs at once, no verifier can hold an older JWKS) and one next. */
export function initialKeySet(
  active: { key: NewKey; privateKey: StoredPrivateKey },
  next: { key: NewKey; privateKey: StoredPrivateKey },
  now: number,
  timing: Timing,
): KeySet {
  const a = { ...record(active.key, active.privateKey, 'active', now), activatedAt: now };
  const n = record(next.key, next.privateKey, 'next', now);
  return { keys: [a, n], rotateAt: now + timing.rotationPeriod * SECOND };
}

export function findByState(set: KeySet, state: KeyState): KeyRecord | undefined {
  return set.keys.find((k) => k.state === state);
}

export function activeKey(set: KeySet): KeyRecord {
  const k = findByState(set, 'active');
  if (!k) throw new IssuerError('internal_error', 'key set has no active key');
  return k;
}

/** Whether a scheduled rotation is due at `now`. */
export function rotationDue(set: KeySet, now: number): boolean {
  return now >= set.rotateAt;
}

/** The earliest time a rotation may happen without `force`: once the next key has been published long enough. */
export function earliestRotation(set: KeySet, timing: Timing): number {
  const next = findByState(set, 'next');
  return next ? next.createdAt + (timing.jwksMaxAge + timing.clockSkew) * SECOND : Number.POSITIVE_INFINITY;
}

function retire(k: KeyRecord, now: number, timing: Timing): KeyRecord {
  return { ...k, state: 'retiring', retiredAt: now, removeAt: now + retentionSeconds(timing) * SECOND };
}

function remove(k: KeyRecord, now: number, reason: 'expired' | 'revoked'): KeyRecord {
  const { privateKey: _dropped, ...rest } = k;
  return { ...rest, state: 'removed', removedAt: now, removedReason: reason };
}

function trimHistory(keys: KeyRecord[]): KeyRecord[] {
  const live = keys.filter((k) => k.state !== 'removed');
  const removed = keys
    .filter((k) => k.state === 'removed')
    .sort((a, b) => (b.removedAt ?? 0) - (a.removedAt ?? 0))
    .slice(0, REMOVED_HISTORY);
  return [...live, ...removed];
}

/**
 * Rotates: next becomes active, active becomes retiring, `newNext` becomes next, and the next
 * scheduled rotation is one period from now. Without `force`, refuses while the next key has
 * been published for less than JWKS_MAX_AGE + CLOCK_SKEW (a verifier could not know it yet).
 */
export function rotate(
  set: KeySet,
  newNext: { key: NewKey; privateKey: StoredPrivateKey },
  now: number,
  timing: Timing,
  opts: { force?: boolean; scheduled?: boolean } = {},
): KeySet {
  const earliest = earliestRotation(set, timing);
  const retiring = set.keys.filter((k) => k.state === 'retiring');
  if (!opts.scheduled && retiring.length >= MAX_RETIRING_KEYS) {
    const leaves = Math.min(...retiring.map((k) => k.removeAt ?? Number.POSITIVE_INFINITY));
    throw new IssuerError(
      'too_many_retiring_keys',
      `${retiring.length} retired keys are still published (at most ${MAX_RETIRING_KEYS}, so verifiers keep them all); the oldest leaves the JWKS at ${new Date(leaves).toISOString()}. To stop a key signing now, revoke it`,
      { retry_after: Math.max(1, Math.ceil((leaves - now) / SECOND)) },
    );
  }
  if (!opts.force && now < earliest) {
    throw new IssuerError(
      'rotation_too_soon',
      `the next key has been published for less than JWKS_MAX_AGE + CLOCK_SKEW; retry after ${new Date(earliest).toISOString()} or use force=true`,
      { retry_after: Math.ceil((earliest - now) / SECOND) },
    );
  }
  const keys = set.keys.map((k): KeyRecord => {
    if (k.state === 'active') return retire(k, now, timing);
    if (k.state === 'next') return { ...k, state: 'active', activatedAt: now };
    return k;
  });
  keys.push(record(newNext.key, newNext.privateKey, 'next', now));
  return expire({ keys: trimHistory(keys), rotateAt: now + timing.rotationPeriod * SECOND }, now);
}

/** Removes retiring keys whose retention has passed. */
export function expire(set: KeySet, now: number): KeySet {
  let changed = false;
  const keys = set.keys.map((k) => {
    if (k.state === 'retiring' && k.removeAt !== undefined && k.removeAt <= now) {
      changed = true;
      return remove(k, now, 'expired');
    }
    return k;
  });
  return changed ? { ...set, keys: trimHistory(keys) } : set;
}

/** What a revocation needs: a replacement next key when the revoked key was active or next. */
export function revocationNeedsNewKey(set: KeySet, kid: string): boolean {
  const k = set.keys.find((x) => x.kid === kid && x.state !== 'removed');
  return k !== undefined && (k.state === 'active' || k.state === 'next');
}

/**
 * Revokes a key: it leaves the JWKS at once. If it was active, the next key becomes active
 * (verifiers that have not seen it yet refetch on its unknown kid) and `replacement` becomes next;
 * if it was next, `replacement` takes its place. Unknown or already removed kid: not_found.
 */
export function revoke(
  set: KeySet,
  kid: string,
  now: number,
  timing: Timing,
  replacement?: { key: NewKey; privateKey: StoredPrivateKey },
): KeySet {
  const target = set.keys.find((k) => k.kid === kid && k.state !== 'removed');
  if (!target) throw new IssuerError('not_found', 'no published key has this kid', { kid });
  let keys = set.keys.map((k) => (k.kid === kid ? remove(k, now, 'revoked') : k));
  let rotateAt = set.rotateAt;
  if (target.state === 'active' || target.state === 'next') {
    if (!replacement) throw new Error('revoke: a replacement next key is required');
    if (target.state === 'active') {
      keys = keys.map((k) => (k.state === 'next' ? { ...k, state: 'active', activatedAt: now } : k));
      rotateAt = now + timing.rotationPeriod * SECOND;
    }
    keys.push(record(replacement.key, replacement.privateKey, 'next', now));
  }
  return { keys: trimHistory(keys), rotateAt };
}

/**
 * Brings a set up to date at `now`: the scheduled rotation if due (a late alarm rotates once,
 * not once per missed period), then expiry. `newNext` is needed only when a rotation is due.
 */
export function advance(set: KeySet, now: number, timing: Timing, newNext?: { key: NewKey; privateKey: StoredPrivateKey }): KeySet {
  let out = set;
  if (rotationDue(out, now)) {
    if (!newNext) throw new Error('advance: a new next key is required when a rotation is due');
    out = rotate(out, newNext, now, timing, { force: true, scheduled: true });
  }
  return expire(out, now);
}

/** When the Durable Object alarm must next fire: the scheduled rotation or the earliest removal. */
export function nextWakeUp(set: KeySet): number {
  let at = set.rotateAt;
  for (const k of set.keys) if (k.state === 'retiring' && k.removeAt !== undefined && k.removeAt < at) at = k.removeAt;
  return at;
}

const PUBLISH_ORDER: Record<KeyState, number> = { active: 0, next: 1, retiring: 2, removed: 3 };

/**
 * The JWKS: every published key, public parts only. Active and next first, then retiring keys
 * newest first: a verifier that keeps only a prefix (src/verifier/limits.ts) keeps the keys that
 * sign now or signed most recently.
 */
export function toJwks(set: KeySet): { keys: PublicJwk[] } {
  return {
    keys: set.keys
      .filter((k) => k.state !== 'removed')
      .sort((a, b) => PUBLISH_ORDER[a.state] - PUBLISH_ORDER[b.state] || (b.retiredAt ?? 0) - (a.retiredAt ?? 0))
      .map((k) => ({ ...k.publicJwk })),
  };
}

const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

export function toView(set: KeySet): KeyView[] {
  return [...set.keys]
    .sort((a, b) => PUBLISH_ORDER[a.state] - PUBLISH_ORDER[b.state] || b.createdAt - a.createdAt)
    .map((k) => {
      const v: KeyView = { kid: k.kid, state: k.state, created_at: iso(k.createdAt)! };
      if (k.activatedAt !== undefined) v.activated_at = iso(k.activatedAt);
      if (k.retiredAt !== undefined) v.retired_at = iso(k.retiredAt);
      if (k.removeAt !== undefined && k.state === 'retiring') v.remove_at = iso(k.removeAt);
      if (k.removedAt !== undefined) v.removed_at = iso(k.removedAt);
      if (k.removedReason !== undefined) v.removed_reason = k.removedReason;
      return v;
    });
}
