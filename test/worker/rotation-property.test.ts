/**
 * The rotation property (docs/architecture.md, "Signing-key rotation", "Timing invariants"): across several rotation periods, with scheduled and
 * manual rotations, a verifier holding a JWKS fetched up to one JWKS max-age earlier verifies every
 * token signed in the last max token TTL, including tokens signed by an isolate whose cached
 * signing key is as stale as key-authority.ts allows (SIGNING_KEY_CACHE_SECONDS, capped at the
 * scheduled rotation).
 */
import { createLocalJWKSet, errors, importJWK, type JWK, jwtVerify, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { maxTokenTtl, SIGNING_KEY_CACHE_SECONDS, type Timing } from '../../src/issuer/key-timing.js';
import {
  activeKey,
  advance,
  earliestRotation,
  generateKey,
  initialKeySet,
  type KeySet,
  revoke,
  rotate,
  toJwks,
} from '../../src/issuer/keys.js';

const timing: Timing = { accessTokenTtl: 300, agentTokenTtl: 600, jwksMaxAge: 300, clockSkew: 30, rotationPeriod: 3600 };
const S = 1000;
const STEP = 20 * S;
const T0 = Date.UTC(2026, 10, 1);

async function fresh() {
  const key = await generateKey();
  return { key, privateKey: { format: 'jwk' as const, jwk: key.privateJwk } };
}

async function sign(set: KeySet, now: number): Promise<{ token: string; kid: string; exp: number }> {
  const k = activeKey(set);
  const jwk = (k.privateKey as { jwk: JWK }).jwk;
  const exp = Math.floor(now / S) + maxTokenTtl(timing);
  const token = await new SignJWT({ sub: 'x' })
    .setProtectedHeader({ alg: 'EdDSA', kid: k.kid, typ: 'at+jwt' })
    .setIssuedAt(Math.floor(now / S))
    .setExpirationTime(exp)
    .sign(await importJWK(jwk, 'EdDSA'));
  return { token, kid: k.kid, exp };
}

describe('rotation property', () => {
  it('every recent token verifies against every JWKS a verifier may hold, over five periods', async () => {
    let set = initialKeySet(await fresh(), await fresh(), T0, timing);
    const history: { at: number; set: KeySet }[] = [];
    const snapshots: { at: number; jwks: ReturnType<typeof createLocalJWKSet> }[] = [];
    const tokens: { token: string; kid: string; exp: number }[] = [];
    const verified = new Set<string>();
    const seenActive = new Set<string>();
    const removed = new Set<string>();
    let manual = 0;
    let scheduled = 0;
    let manualPending = false;

    for (let now = T0; now <= T0 + 5 * timing.rotationPeriod * S; now += STEP) {
      const due = now >= set.rotateAt;
      set = advance(set, now, timing, due ? await fresh() : undefined);
      // After each scheduled rotation, an operator rotates by hand half-way to the next one.
      if (due) {
        scheduled++;
        manualPending = true;
      }
      if (manualPending && set.rotateAt - now === (timing.rotationPeriod * S) / 2 && now >= earliestRotation(set, timing)) {
        set = rotate(set, await fresh(), now, timing);
        manual++;
        manualPending = false;
      }
      for (const k of set.keys) if (k.state === 'removed') removed.add(k.kid);
      history.push({ at: now, set });
      snapshots.push({ at: now, jwks: createLocalJWKSet(toJwks(set)) });
      seenActive.add(activeKey(set).kid);

      // One token from an isolate with a fresh key, and one from the isolate with the oldest cached
      // key it may still use: fetched under a minute ago and not past that set's scheduled rotation.
      tokens.push(await sign(set, now));
      const stale = history.find((h) => h.at > now - SIGNING_KEY_CACHE_SECONDS * S && now < h.set.rotateAt);
      if (stale) tokens.push(await sign(stale.set, now));

      // Each (token, held JWKS) pair is checked once: the outcome does not depend on the step.
      tokens.forEach((t, ti) => {
        if (t.exp * S <= now) return;
        snapshots.forEach((snap, si) => {
          if (snap.at < now - timing.jwksMaxAge * S || verified.has(`${ti}:${si}`)) return;
          verified.add(`${ti}:${si}`);
        });
      });
    }
    // Verify every pair collected above (done after the loop so the loop stays cheap to read).
    let checks = 0;
    for (const pair of verified) {
      const [ti, si] = pair.split(':').map(Number) as [number, number];
      const t = tokens[ti]!;
      const snap = snapshots[si]!;
      const at = Math.max(snap.at, (t.exp - maxTokenTtl(timing)) * S);
      await jwtVerify(t.token, snap.jwks, { currentDate: new Date(at), algorithms: ['EdDSA'] }).catch((e: unknown) => {
        throw new Error(`token ${ti} (kid ${t.kid}) failed against the JWKS fetched at +${(snap.at - T0) / S}s: ${String(e)}`);
      });
      checks++;
    }
    // Not vacuous: keys rotated on schedule and by hand, and old ones left the JWKS.
    expect(manual).toBeGreaterThanOrEqual(2);
    expect(scheduled).toBeGreaterThanOrEqual(2);
    expect(seenActive.size).toBeGreaterThanOrEqual(5);
    expect(removed.size).toBeGreaterThanOrEqual(3);
    expect(checks).toBeGreaterThan(10_000);
  }, 60_000);

  it('a revoked key fails once the verifier refetches', async () => {
    let set = initialKeySet(await fresh(), await fresh(), T0, timing);
    const now = T0 + 100 * S;
    const t = await sign(set, now);
    const before = createLocalJWKSet(toJwks(set));
    await jwtVerify(t.token, before, { currentDate: new Date(now) });

    set = revoke(set, t.kid, now + S, timing, await fresh());
    const refetched = createLocalJWKSet(toJwks(set));
    await expect(jwtVerify(t.token, refetched, { currentDate: new Date(now + 2 * S) })).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);
    // A token from the promoted key verifies against the refetched set.
    const t2 = await sign(set, now + 2 * S);
    expect(t2.kid).not.toBe(t.kid);
    await jwtVerify(t2.token, refetched, { currentDate: new Date(now + 3 * S) });
  });
});
