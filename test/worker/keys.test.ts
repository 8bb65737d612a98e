import { calculateJwkThumbprint } from 'jose';
import { describe, expect, it } from 'vitest';
import { IssuerError } from '../../src/issuer/errors.js';
import { retentionSeconds, type Timing } from '../../src/issuer/key-timing.js';
import {
  activeKey,
  advance,
  earliestRotation,
  expire,
  findByState,
  generateKey,
  initialKeySet,
  type KeySet,
  nextWakeUp,
  REMOVED_HISTORY,
  revoke,
  rotate,
  toJwks,
  toView,
} from '../../src/issuer/keys.js';

const timing: Timing = { accessTokenTtl: 300, agentTokenTtl: 600, jwksMaxAge: 300, clockSkew: 30, rotationPeriod: 86400 };
const T0 = Date.UTC(2026, 10, 1);
const S = 1000;

async function fresh() {
  const key = await generateKey();
  return { key, privateKey: { format: 'jwk' as const, jwk: key.privateJwk } };
}

async function start(): Promise<KeySet> {
  return initialKeySet(await fresh(), await fresh(), T0, timing);
}

function errorCode(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof IssuerError) return e.code;
    throw e;
  }
  throw new Error('expected an IssuerError');
}

describe('keys', () => {
  it('kid is the RFC 7638 thumbprint of the public key', async () => {
    const k = await generateKey();
    expect(k.kid).toBe(await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: k.publicJwk.x }));
    expect(k.publicJwk).toEqual({ kty: 'OKP', crv: 'Ed25519', x: k.publicJwk.x, kid: k.kid, alg: 'EdDSA', use: 'sig' });
    expect(k.publicJwk).not.toHaveProperty('d');
  });

  it('starts with one active and one next key, rotation one period out', async () => {
    const set = await start();
    expect(set.keys.map((k) => k.state)).toEqual(['active', 'next']);
    expect(set.rotateAt).toBe(T0 + 86400 * S);
    expect(nextWakeUp(set)).toBe(set.rotateAt);
    expect(toJwks(set).keys).toHaveLength(2);
  });

  it('refuses a manual rotation until the next key is JWKS_MAX_AGE + skew old, unless forced', async () => {
    const set = await start();
    const at = earliestRotation(set, timing);
    expect(at).toBe(T0 + 330 * S);
    expect(errorCode(() => rotate(set, undefined as never, at - 1, timing))).toBe('rotation_too_soon');
    const n = await fresh();
    const out = rotate(set, n, at, timing);
    expect(findByState(out, 'active')!.kid).toBe(findByState(set, 'next')!.kid);
    expect(findByState(out, 'next')!.kid).toBe(n.key.kid);
    expect(findByState(out, 'retiring')!.kid).toBe(findByState(set, 'active')!.kid);
    const forced = rotate(set, await fresh(), T0 + 1, timing, { force: true });
    expect(findByState(forced, 'active')!.kid).toBe(findByState(set, 'next')!.kid);
  });

  it('removes a retiring key exactly at its retention, and drops its private half', async () => {
    const set = await start();
    const t1 = T0 + 86400 * S;
    const rotated = advance(set, t1, timing, await fresh());
    const retiring = findByState(rotated, 'retiring')!;
    const removeAt = t1 + retentionSeconds(timing) * S;
    expect(retiring.removeAt).toBe(removeAt);
    expect(nextWakeUp(rotated)).toBe(removeAt);
    expect(findByState(expire(rotated, removeAt - 1), 'retiring')).toBeDefined();
    const gone = expire(rotated, removeAt);
    expect(findByState(gone, 'retiring')).toBeUndefined();
    const removed = gone.keys.find((k) => k.kid === retiring.kid)!;
    expect(removed).toMatchObject({ state: 'removed', removedReason: 'expired', removedAt: removeAt });
    expect(removed.privateKey).toBeUndefined();
    expect(toJwks(gone).keys.map((k) => k.kid)).not.toContain(retiring.kid);
  });

  it('a late alarm rotates once, not once per missed period', async () => {
    const set = await start();
    const out = advance(set, T0 + 3 * 86400 * S + 5, timing, await fresh());
    expect(out.keys.map((k) => k.state)).toEqual(['retiring', 'active', 'next']);
    expect(out.keys.filter((k) => k.state === 'active')).toHaveLength(1);
    expect(out.rotateAt).toBe(T0 + 4 * 86400 * S + 5);
  });

  it('revoking the active key promotes the next and adds a new next', async () => {
    const set = await start();
    const oldActive = activeKey(set).kid;
    const repl = await fresh();
    const out = revoke(set, oldActive, T0 + 10 * S, timing, repl);
    expect(activeKey(out).kid).toBe(findByState(set, 'next')!.kid);
    expect(findByState(out, 'next')!.kid).toBe(repl.key.kid);
    expect(toJwks(out).keys.map((k) => k.kid)).not.toContain(oldActive);
    expect(out.rotateAt).toBe(T0 + 10 * S + 86400 * S);
  });

  it('revoking the next key replaces it; a retiring key just goes; unknown kid is not_found', async () => {
    let set = await start();
    const next = findByState(set, 'next')!.kid;
    const repl = await fresh();
    set = revoke(set, next, T0 + 1, timing, repl);
    expect(findByState(set, 'next')!.kid).toBe(repl.key.kid);
    set = rotate(set, await fresh(), T0 + 2, timing, { force: true });
    const retiring = findByState(set, 'retiring')!.kid;
    set = revoke(set, retiring, T0 + 3, timing);
    expect(findByState(set, 'retiring')).toBeUndefined();
    expect(errorCode(() => revoke(set, retiring, T0 + 4, timing))).toBe('not_found');
    expect(errorCode(() => revoke(set, 'A'.repeat(43), T0 + 4, timing))).toBe('not_found');
  });

  it('keeps a bounded history of removed keys', async () => {
    let set = await start();
    for (let i = 1; i <= REMOVED_HISTORY + 5; i++) set = rotate(set, await fresh(), T0 + i * 86400 * S, timing, { force: true });
    set = expire(set, T0 + 1000 * 86400 * S);
    expect(set.keys.filter((k) => k.state === 'removed')).toHaveLength(REMOVED_HISTORY);
  });

  it('the admin view never carries private material', async () => {
    const set = rotate(await start(), await fresh(), T0 + 1, timing, { force: true });
    const text = JSON.stringify(toView(set));
    for (const k of set.keys) {
      if (k.privateKey?.format === 'jwk') expect(text).not.toContain(k.privateKey.jwk.d);
    }
    expect(toView(set).map((v) => v.state)).toEqual(['active', 'next', 'retiring']);
  });
});

describe('failure G: forced rotations cannot grow the JWKS without limit', () => {
  it('failure G: manual rotations past MAX_RETIRING_KEYS are refused (409 too_many_retiring_keys); the JWKS stays bounded and ordered', async () => {
    const { MAX_RETIRING_KEYS, MAX_PUBLISHED_KEYS } = await import('../../src/issuer/jwks-bounds.js');
    let set = await start();
    let now = T0;
    for (let i = 0; i < MAX_RETIRING_KEYS; i++) {
      now += S;
      set = rotate(set, await fresh(), now, timing, { force: true });
    }
    expect(set.keys.filter((k) => k.state === 'retiring')).toHaveLength(MAX_RETIRING_KEYS);
    const extra = await fresh();
    expect(errorCode(() => rotate(set, extra, now + S, timing, { force: true }))).toBe('too_many_retiring_keys');
    expect(errorCode(() => rotate(set, extra, now + 3600 * S, timing))).toBe('too_many_retiring_keys');
    // Published: active, next, then retiring newest first (a verifier keeping a prefix keeps these).
    const jwks = toJwks(set).keys.map((k) => k.kid);
    const retiring = set.keys
      .filter((k) => k.state === 'retiring')
      .sort((a, b) => b.retiredAt! - a.retiredAt!)
      .map((k) => k.kid);
    expect(jwks).toEqual([activeKey(set).kid, findByState(set, 'next')!.kid, ...retiring]);
    // The scheduled rotation is never refused: one more retiring key, still within the bound.
    const scheduled = advance(set, set.rotateAt, timing, await fresh());
    expect(toJwks(scheduled).keys.length).toBeLessThanOrEqual(MAX_PUBLISHED_KEYS);
    expect(activeKey(scheduled).kid).toBe(findByState(set, 'next')!.kid);
    // Once the oldest retiring key has left the JWKS, a manual rotation works again.
    const oldestLeaves = Math.min(...set.keys.filter((k) => k.state === 'retiring').map((k) => k.removeAt!));
    const later = expire(set, oldestLeaves);
    expect(() => rotate(later, extra, oldestLeaves, timing, { force: true })).not.toThrow();
  });

  it('failure G: the largest JWKS the issuer can publish fits what the verifier keeps and reads', async () => {
    const { jwksWithinVerifierLimits, MAX_PUBLISHED_KEYS } = await import('../../src/issuer/jwks-bounds.js');
    const { MAX_JWKS_KEYS, MAX_JWKS_BYTES } = await import('../../src/verifier/limits.js');
    const bound = jwksWithinVerifierLimits();
    expect(bound).toMatchObject({ ok: true, keys: MAX_PUBLISHED_KEYS });
    expect(MAX_PUBLISHED_KEYS).toBeLessThanOrEqual(MAX_JWKS_KEYS);
    // The estimate is not below a real JWKS of that many keys.
    const keys = await Promise.all(Array.from({ length: MAX_PUBLISHED_KEYS }, async () => (await generateKey()).publicJwk));
    expect(JSON.stringify({ keys }).length).toBeLessThanOrEqual(bound.bytes);
    expect(bound.bytes).toBeLessThanOrEqual(MAX_JWKS_BYTES);
  });
});
