/**
 * The verifier (src/verifier) in Node against a real JWKS server on 127.0.0.1, with an injected
 * clock: strict claim rules at their boundaries, the JWKS cache (max-age within bounds, unknown-kid
 * refetch once per cooldown with one fetch in flight, once a second after a failed fetch; a stale
 * copy's revalidation waited for at most 0.5 s, the copy serving up to stale-if-error, the last
 * good copy through an outage up to 24 h; the key limit), rotation and revocation, and the
 * verified-token cache.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { bearerToken } from '../../src/verifier/bearer.js';
import { VerifierError } from '../../src/verifier/errors.js';
import { createVerifier, type Verifier, type VerifierEvent, type VerifierOptions } from '../../src/verifier/verify.js';
import { AUDIENCE, ISSUER, type JwksServer, makeKey, signRaw, startJwksServer, type TestKey, token } from './gateway-proxy-fixtures.js';

const SKEW = 30;
const T0 = Date.UTC(2026, 5, 1, 12, 0, 0);

let keyA: TestKey;
let keyB: TestKey;
let jwks: JwksServer;
let clock: number;
let events: VerifierEvent[];

function verifier(o: Partial<VerifierOptions> = {}): Verifier {
  return createVerifier({ jwksUrl: jwks.url, issuer: ISSUER, audience: AUDIENCE, now: () => clock, onEvent: (e) => events.push(e), ...o });
}

/** Until the JWKS fetch in flight, if any, has settled (a background refetch, say). */
async function settled(v: Verifier): Promise<void> {
  for (let i = 0; v.status().jwks.refreshing; i++) {
    if (i > 500) throw new Error('the JWKS fetch did not settle');
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'accepted';
  } catch (e) {
    if (e instanceof VerifierError) return e.code;
    throw e;
  }
}

beforeEach(async () => {
  keyA ??= await makeKey();
  keyB ??= await makeKey();
  jwks = await startJwksServer([keyA.publicJwk]);
  clock = T0;
  events = [];
});
afterEach(async () => {
  vi.restoreAllMocks();
  await jwks.close();
});

describe('claims at their boundaries (skew 30 s)', () => {
  it('exp: accepted at exp - 1, exp and exp + skew - 1; expired at exp + skew and exp + skew + 1', async () => {
    const v = verifier({ tokenCache: { maxEntries: 0 } });
    const t = await token(keyA, { now: T0, ttl: 300 });
    const exp = T0 / 1000 + 300;
    for (const [at, want] of [
      [exp - 1, 'accepted'],
      [exp, 'accepted'],
      [exp + SKEW - 1, 'accepted'],
      [exp + SKEW, 'expired'],
      [exp + SKEW + 1, 'expired'],
    ] as const) {
      clock = at * 1000;
      expect([at - exp, await codeOf(v.verify(t))]).toEqual([at - exp, want]);
    }
  });

  it('nbf and iat: up to the skew ahead is accepted, one second more is refused', async () => {
    const v = verifier();
    const now = T0 / 1000;
    expect(await codeOf(v.verify(await token(keyA, { now: T0, claims: { nbf: now + SKEW } })))).toBe('accepted');
    expect(await codeOf(v.verify(await token(keyA, { now: T0, claims: { nbf: now + SKEW + 1 } })))).toBe('not_yet_valid');
    expect(await codeOf(v.verify(await token(keyA, { now: T0, claims: { iat: now + SKEW } })))).toBe('accepted');
    expect(await codeOf(v.verify(await token(keyA, { now: T0, claims: { iat: now + SKEW + 1 } })))).toBe('iat_in_future');
  });

  it('a configured skew of 0 refuses at exp exactly', async () => {
    const v = verifier({ clockSkew: 0, tokenCache: { maxEntries: 0 } });
    const t = await token(keyA, { now: T0, ttl: 60 });
    clock = T0 + 59_000;
    expect(await codeOf(v.verify(t))).toBe('accepted');
    clock = T0 + 60_000;
    expect(await codeOf(v.verify(t))).toBe('expired');
  });

  it('required claims: exp, iat, sub, jti present; exp and iat finite numbers; sub and jti non-empty', async () => {
    const v = verifier();
    const cases: [Record<string, unknown> | string, string][] = [
      ['exp', 'exp_missing'],
      ['iat', 'iat_missing'],
      ['sub', 'sub_missing'],
      ['jti', 'jti_missing'],
      [{ exp: '2000000000' }, 'exp_missing'],
      [{ iat: null }, 'iat_missing'],
      [{ sub: '' }, 'sub_missing'],
      [{ jti: 42 }, 'jti_missing'],
      [{ nbf: 'soon' }, 'invalid_claim'],
      [{ iss: 'https://other.test' }, 'bad_issuer'],
      [{ aud: 'gateway:other' }, 'bad_audience'],
      [{ aud: [AUDIENCE] }, 'bad_audience'],
      [{ aud: [AUDIENCE, 'gateway:other'] }, 'bad_audience'],
    ];
    for (const [change, code] of cases) {
      const t =
        typeof change === 'string' ? await token(keyA, { now: T0, drop: [change] }) : await token(keyA, { now: T0, claims: change });
      expect([change, await codeOf(v.verify(t))]).toEqual([change, code]);
    }
  });

  it('exp written as 1e999 (Infinity once parsed) is refused, not taken as "never expires"', async () => {
    const v = verifier();
    const now = T0 / 1000;
    const header = JSON.stringify({ alg: 'EdDSA', kid: keyA.kid, typ: 'at+jwt' });
    const t = await signRaw(keyA, header, `{"iss":"${ISSUER}","sub":"u","aud":"${AUDIENCE}","iat":${now},"exp":1e999,"jti":"j"}`);
    expect(await codeOf(v.verify(t))).toBe('exp_missing');
  });

  it('accepts typ at+jwt in any case and as application/at+jwt; alg EdDSA and Ed25519', async () => {
    const v = verifier();
    for (const header of [{ typ: 'AT+JWT' }, { typ: 'application/at+jwt' }, { alg: 'Ed25519' }]) {
      expect([header, await codeOf(v.verify(await token(keyA, { now: T0, header })))]).toEqual([header, 'accepted']);
    }
    expect(await codeOf(v.verify(await token(keyA, { now: T0, header: { typ: 'JWT' } })))).toBe('invalid_typ');
  });

  it('returns the claims, frozen', async () => {
    const v = verifier();
    const claims = await v.verify(await token(keyA, { now: T0, claims: { cnf: { jkt: 'x' } } }));
    expect(claims).toMatchObject({ iss: ISSUER, aud: AUDIENCE, sub: 'user-1', client_id: 'sbx-1' });
    expect(Object.isFrozen(claims)).toBe(true);
    expect(Object.isFrozen(claims.cnf)).toBe(true);
  });
});

describe('bearerToken', () => {
  it('takes exactly one Bearer credential, scheme case-insensitive', () => {
    expect(bearerToken('Bearer abc.def.ghi')).toBe('abc.def.ghi');
    expect(bearerToken('bearer abc.def.ghi')).toBe('abc.def.ghi');
    expect(bearerToken(['BEARER   abc'])).toBe('abc');
    const code = (v: Parameters<typeof bearerToken>[0]) => {
      try {
        bearerToken(v);
        return 'accepted';
      } catch (e) {
        return (e as VerifierError).code;
      }
    };
    expect(code(null)).toBe('missing_token');
    expect(code([])).toBe('missing_token');
    expect(code('Bearer')).toBe('missing_token');
    expect(code('Bearer   ')).toBe('missing_token');
    expect(code('Basic dXNlcjpwYXNz')).toBe('invalid_scheme');
    expect(code('Token abc')).toBe('invalid_scheme');
    expect(code('abc.def.ghi')).toBe('invalid_scheme');
    expect(code(['Bearer a', 'Bearer b'])).toBe('multiple_authorization');
    expect(code('Bearer a, Bearer b')).toBe('multiple_authorization');
    expect(code('Bearer a b')).toBe('malformed_token');
    expect(code(`Bearer ${'a'.repeat(1 << 20)}`)).toBe('token_too_large');
  });
});

describe('JWKS cache', () => {
  it('honours max-age: no fetch while fresh, one conditional refetch (304) after', async () => {
    jwks.cacheControl = 'public, max-age=60';
    const v = verifier({ tokenCache: { maxEntries: 0 } });
    const t = await token(keyA, { now: T0, ttl: 3600 });
    await v.verify(t);
    expect(jwks.hits).toBe(1);
    clock = T0 + 59_000;
    await v.verify(t);
    expect(jwks.hits).toBe(1);
    clock = T0 + 60_000;
    await v.verify(t);
    expect(jwks.hits).toBe(2);
    expect(events.filter((e) => e.event === 'jwks_fetched').map((e) => (e as { status: number }).status)).toEqual([200, 304]);
    expect(v.status().jwks).toMatchObject({ ageSeconds: 0, fresh: true, usable: true, kids: [keyA.kid] });
  });

  it('clamps max-age into its bounds: max-age=0 still caches for the minimum, a day is cut to the maximum', async () => {
    jwks.cacheControl = 'no-cache, max-age=0';
    const v = verifier({ tokenCache: { maxEntries: 0 }, jwks: { minAgeSeconds: 10, maxAgeSeconds: 600 } });
    const t = await token(keyA, { now: T0, ttl: 86_400 });
    await v.verify(t);
    clock = T0 + 9_000;
    await v.verify(t);
    expect(jwks.hits).toBe(1);
    clock = T0 + 10_000;
    jwks.cacheControl = 'max-age=86400';
    await v.verify(t);
    expect(jwks.hits).toBe(2);
    clock = T0 + 10_000 + 599_000;
    await v.verify(t);
    expect(jwks.hits).toBe(2);
    clock = T0 + 10_000 + 600_000;
    await v.verify(t);
    expect(jwks.hits).toBe(3);
  });

  it('subtracts Age from max-age (a copy that sat in a cache is older than it looks)', async () => {
    const { freshnessOf } = await import('../../src/verifier/jwks.js');
    expect(freshnessOf(new Headers({ 'cache-control': 'public, max-age=300', age: '100' }), 5)).toBe(200_000);
    expect(freshnessOf(new Headers({ 'cache-control': 'max-age=300', age: '900' }), 5)).toBe(0);
    expect(freshnessOf(new Headers({ 'cache-control': 'no-store' }), 5)).toBe(0);
    expect(freshnessOf(new Headers({}), 5)).toBe(5);
    expect(freshnessOf(new Headers({ 'cache-control': 'max-age=abc' }), 5)).toBe(5);
  });

  it('an unknown kid refetches once, then not again until the cooldown has passed', async () => {
    const v = verifier();
    await v.verify(await token(keyA, { now: T0 }));
    expect(jwks.hits).toBe(1);
    const unknown = await token(keyB, { now: T0 });
    expect(await codeOf(v.verify(unknown))).toBe('unknown_kid');
    expect(jwks.hits).toBe(2);
    clock = T0 + 29_000;
    expect(await codeOf(v.verify(unknown))).toBe('unknown_kid');
    expect(jwks.hits).toBe(2);
    clock = T0 + 30_000;
    expect(await codeOf(v.verify(unknown))).toBe('unknown_kid');
    expect(jwks.hits).toBe(3);
  });

  it('1,000 concurrent tokens with unknown kids cost one fetch, in flight once', async () => {
    const v = verifier();
    await v.verify(await token(keyA, { now: T0 }));
    jwks.delayMs = 50;
    const bad = await Promise.all(Array.from({ length: 1000 }, (_, i) => token({ ...keyB, kid: `unknown-${i}` }, { now: T0 })));
    const codes = await Promise.all(bad.map((t) => codeOf(v.verify(t))));
    expect(new Set(codes)).toEqual(new Set(['unknown_kid']));
    expect(jwks.hits).toBe(2);
  });

  it('rotation: a new kid is accepted after one refetch; a revoked kid is refused after its refetch', async () => {
    jwks.cacheControl = 'max-age=300';
    const v = verifier();
    const oldToken = await token(keyA, { now: T0, ttl: 3600 });
    expect(await codeOf(v.verify(oldToken))).toBe('accepted');
    expect(jwks.hits).toBe(1);

    // The issuer rotates: B signs, A is still published (retiring).
    jwks.keys = [keyA.publicJwk, keyB.publicJwk];
    clock = T0 + 10_000;
    const newToken = await token(keyB, { now: clock, ttl: 3600 });
    expect(await codeOf(v.verify(newToken))).toBe('accepted');
    expect(jwks.hits).toBe(2);
    expect(await codeOf(v.verify(await token(keyB, { now: clock })))).toBe('accepted');
    expect(jwks.hits).toBe(2);

    // A is revoked: until the copy expires A's tokens pass (the cost of caching); after the refetch they do not,
    // even the one already in the verified-token cache.
    jwks.keys = [keyB.publicJwk];
    clock = T0 + 10_000 + 299_000;
    expect(await codeOf(v.verify(oldToken))).toBe('accepted');
    expect(jwks.hits).toBe(2);
    clock = T0 + 10_000 + 300_000;
    expect(await codeOf(v.verify(await token(keyA, { now: clock })))).toBe('unknown_kid');
    expect(jwks.hits).toBe(3);
    expect(await codeOf(v.verify(oldToken))).toBe('unknown_kid');
    expect(await codeOf(v.verify(newToken))).toBe('accepted');
    expect(events).toContainEqual({ event: 'token_cache_pruned', dropped: 1 });
  });

  it('revocation reaches cached tokens: with only cache hits flowing, the stale copy is still refetched', async () => {
    jwks.cacheControl = 'max-age=300';
    const verify = vi.spyOn(crypto.subtle, 'verify');
    const v = verifier();
    const t = await token(keyA, { now: T0, ttl: 3600 });
    await v.verify(t);
    jwks.keys = [keyB.publicJwk];
    clock = T0 + 299_000;
    expect(await codeOf(v.verify(t))).toBe('accepted');
    expect(jwks.hits).toBe(1);
    clock = T0 + 300_000;
    expect(await codeOf(v.verify(t))).toBe('unknown_kid');
    expect(jwks.hits).toBe(2);
    expect(verify).toHaveBeenCalledTimes(1);
  });

  it('an outage keeps the last good copy in service up to 24 h, then refuses with jwks_unavailable', async () => {
    jwks.cacheControl = 'max-age=300';
    const v = verifier({ tokenCache: { maxEntries: 0 } });
    await v.verify(await token(keyA, { now: T0 }));
    jwks.fault = 'down';
    clock = T0 + 301_000;
    expect(await codeOf(v.verify(await token(keyA, { now: clock })))).toBe('accepted');
    expect(jwks.hits).toBe(2);
    expect(events).toContainEqual(expect.objectContaining({ event: 'jwks_fetch_failed', serving_stale: true }));
    // Failed fetches are retried at most once per cooldown, not per request.
    clock += 10_000;
    expect(await codeOf(v.verify(await token(keyA, { now: clock })))).toBe('accepted');
    expect(jwks.hits).toBe(2);
    jwks.fault = 503;
    clock = T0 + 23 * 3600_000;
    // After a failure the stale copy serves at once; the retry runs in the background.
    expect(await codeOf(v.verify(await token(keyA, { now: clock })))).toBe('accepted');
    await settled(v);
    expect(v.status().jwks).toMatchObject({ usable: true, fresh: false, lastError: 'HTTP 503' });
    clock = T0 + 24 * 3600_000 + 1000;
    expect(await codeOf(v.verify(await token(keyA, { now: clock })))).toBe('jwks_unavailable');
    expect(v.status().jwks.usable).toBe(false);
    // Back up: the next fetch restores service.
    jwks.fault = undefined;
    clock += 30_000;
    expect(await codeOf(v.verify(await token(keyA, { now: clock })))).toBe('accepted');
  });

  it('never fetched: jwks_unavailable; the first fetch is retried at most once a second, not per request', async () => {
    jwks.fault = 500;
    const v = verifier();
    const t = await token(keyA, { now: T0 });
    expect(await codeOf(v.verify(t))).toBe('jwks_unavailable');
    jwks.fault = undefined;
    for (let i = 0; i < 10; i++) expect(await codeOf(v.verify(t))).toBe('jwks_unavailable');
    expect(jwks.hits).toBe(1);
    clock += 1_000;
    expect(await codeOf(v.verify(t))).toBe('accepted');
    expect(jwks.hits).toBe(2);
  });

  it('keeps only Ed25519 signing keys; a private key, another key type or a repeated kid is skipped and reported', async () => {
    const other = await makeKey();
    jwks.keys = [
      keyA.publicJwk,
      { ...keyB.publicJwk, d: 'AAAA' },
      { kty: 'RSA', kid: 'rsa', n: 'AQAB', e: 'AQAB' },
      { ...other.publicJwk, use: 'enc' },
      { ...other.publicJwk, kid: 'dup' },
      { ...keyB.publicJwk, kid: 'dup' },
    ];
    const v = verifier();
    await v.refresh();
    expect(v.status().jwks.kids).toEqual([keyA.kid]);
    const why = events.filter((e) => e.event === 'jwks_key_ignored').map((e) => (e as { why: string }).why);
    expect(why).toEqual(['private key material', 'not an Ed25519 key', 'use is not sig', 'duplicate kid', 'duplicate kid']);
  });

  it('a JWKS body over the size limit or not JSON is a failed fetch', async () => {
    const v = verifier({ jwks: { maxBytes: 100 } });
    await v.refresh();
    expect(v.status().jwks).toMatchObject({ usable: false, lastError: 'body over 100 bytes' });
  });
});

describe('verified-token cache', () => {
  it('a repeated token costs no signature check; the cached claims are the same object', async () => {
    const verify = vi.spyOn(crypto.subtle, 'verify');
    const v = verifier();
    const t = await token(keyA, { now: T0 });
    const first = await v.verify(t);
    expect(verify).toHaveBeenCalledTimes(1);
    for (let i = 0; i < 100; i++) expect(await v.verify(t)).toBe(first);
    expect(verify).toHaveBeenCalledTimes(1);
    expect(v.status().tokenCacheSize).toBe(1);
  });

  it('concurrent first sightings of one token share one check', async () => {
    const verify = vi.spyOn(crypto.subtle, 'verify');
    const v = verifier();
    await v.refresh();
    const t = await token(keyA, { now: T0 });
    await Promise.all(Array.from({ length: 50 }, () => v.verify(t)));
    expect(verify).toHaveBeenCalledTimes(1);
  });

  it('is bounded in entries: past the bound the oldest is checked again', async () => {
    const verify = vi.spyOn(crypto.subtle, 'verify');
    const v = verifier({ tokenCache: { maxEntries: 2 } });
    const [t1, t2, t3] = await Promise.all([1, 2, 3].map(() => token(keyA, { now: T0 })));
    for (const t of [t1!, t2!, t3!]) await v.verify(t);
    expect(verify).toHaveBeenCalledTimes(3);
    expect(v.status().tokenCacheSize).toBe(2);
    await v.verify(t3!);
    expect(verify).toHaveBeenCalledTimes(3);
    await v.verify(t1!);
    expect(verify).toHaveBeenCalledTimes(4);
  });

  it("is bounded by each token's exp: a cached token is refused once exp + skew has passed", async () => {
    const v = verifier();
    const t = await token(keyA, { now: T0, ttl: 60 });
    await v.verify(t);
    clock = T0 + (60 + SKEW - 1) * 1000;
    expect(await codeOf(v.verify(t))).toBe('accepted');
    clock = T0 + (60 + SKEW) * 1000;
    expect(await codeOf(v.verify(t))).toBe('expired');
    expect(v.status().tokenCacheSize).toBe(0);
  });

  it('refused tokens are not cached', async () => {
    const verify = vi.spyOn(crypto.subtle, 'verify');
    const v = verifier();
    const t = await token(keyA, { now: T0, claims: { aud: 'gateway:other' } });
    expect(await codeOf(v.verify(t))).toBe('bad_audience');
    expect(await codeOf(v.verify(t))).toBe('bad_audience');
    expect(verify).toHaveBeenCalledTimes(2);
    expect(v.status().tokenCacheSize).toBe(0);
  });
});

describe('options are checked once, when the verifier is built', () => {
  it('names the bad option', () => {
    const base = { jwksUrl: 'http://127.0.0.1:1/jwks', issuer: ISSUER, audience: AUDIENCE };
    expect(() => createVerifier({ ...base, jwksUrl: 'not a url' })).toThrow();
    expect(() => createVerifier({ ...base, issuer: '' })).toThrow(/issuer/);
    expect(() => createVerifier({ ...base, audience: '' })).toThrow(/audience/);
    expect(() => createVerifier({ ...base, clockSkew: 301 })).toThrow(/clockSkew/);
    expect(() => createVerifier({ ...base, clockSkew: -1 })).toThrow(/clockSkew/);
    expect(() => createVerifier({ ...base, jwks: { minAgeSeconds: 100, maxAgeSeconds: 10 } })).toThrow(/minAgeSeconds/);
    expect(() => createVerifier({ ...base, tokenCache: { maxEntries: -1 } })).toThrow(/maxEntries/);
  });
});

describe('issue 12: JWKS outages (injected clock; the real-time runs are in verifier-outage.test.ts)', () => {
  it('failure D: after a failed fetch an unknown kid retries once a second, not once per 30 s; after a success the 30 s cooldown holds', async () => {
    jwks.cacheControl = 'public, max-age=300, stale-while-revalidate=60, stale-if-error=86400';
    const v = verifier();
    await v.verify(await token(keyA, { now: T0 }));
    jwks.fault = 'down';
    const b = await token(keyB, { now: T0 });
    clock = T0 + 1_000;
    expect(await codeOf(v.verify(b))).toBe('unknown_kid');
    expect(jwks.hits).toBe(2);
    clock += 500;
    expect(await codeOf(v.verify(b))).toBe('unknown_kid');
    expect(jwks.hits).toBe(2);
    clock += 500;
    expect(await codeOf(v.verify(b))).toBe('unknown_kid');
    expect(jwks.hits).toBe(3);
    // The JWKS is back, with the key made during the outage: the next retry, a second later, finds it.
    jwks.fault = undefined;
    jwks.keys = [keyA.publicJwk, keyB.publicJwk];
    clock += 1_000;
    expect(await codeOf(v.verify(b))).toBe('accepted');
    expect(jwks.hits).toBe(4);
    // A success puts made-up kids back under the cooldown.
    const junk = await token({ ...keyB, kid: 'junk' }, { now: T0 });
    for (const step of [1_000, 1_000, 10_000]) {
      clock += step;
      expect(await codeOf(v.verify(junk))).toBe('unknown_kid');
    }
    expect(jwks.hits).toBe(4);
    clock += 18_000; // 30 s after the last unknown-kid fetch
    expect(await codeOf(v.verify(junk))).toBe('unknown_kid');
    expect(jwks.hits).toBe(5);
  });

  it('failure E: past max-age a slow refetch holds requests for at most 0.5 s; the stale copy answers while it runs, once', async () => {
    jwks.cacheControl = 'public, max-age=300, stale-while-revalidate=60, stale-if-error=86400';
    const v = verifier();
    const cached = await token(keyA, { now: T0, ttl: 3600 });
    await v.verify(cached);
    // The issuer revokes A and becomes slow (1.5 s per answer); the copy goes stale.
    jwks.keys = [keyB.publicJwk];
    jwks.delayMs = 1_500;
    clock = T0 + 300_000;
    let started = performance.now();
    const codes = await Promise.all([
      codeOf(v.verify(cached)),
      ...Array.from({ length: 20 }, async () => codeOf(v.verify(await token(keyA, { now: clock })))),
    ]);
    const waited = performance.now() - started;
    expect(waited).toBeGreaterThanOrEqual(400);
    expect(waited).toBeLessThan(1_000);
    // The issuer has not answered within the wait: the stale copy decides meanwhile...
    expect(new Set(codes)).toEqual(new Set(['accepted']));
    expect(v.status().jwks).toMatchObject({ fresh: false, usable: true, refreshing: true });
    // ...and the wait is not repeated for later requests during the same refetch.
    started = performance.now();
    expect(await codeOf(v.verify(await token(keyA, { now: clock })))).toBe('accepted');
    expect(performance.now() - started).toBeLessThan(300);
    await settled(v);
    expect(jwks.hits).toBe(2);
    // Once it has landed, the revoked key is refused, the cached token included.
    expect(v.status().jwks).toMatchObject({ fresh: true, kids: [keyB.kid] });
    expect(await codeOf(v.verify(cached))).toBe('unknown_kid');
  }, 15_000);

  it('failure E: an issuer that answers within the wait is waited for: a revocation counts at max-age, within stale-while-revalidate too', async () => {
    jwks.cacheControl = 'public, max-age=300, stale-while-revalidate=60, stale-if-error=86400';
    const v = verifier();
    const cached = await token(keyA, { now: T0, ttl: 3600 });
    await v.verify(cached);
    jwks.keys = [keyB.publicJwk];
    jwks.delayMs = 100;
    clock = T0 + 300_000;
    // The revalidation (hit 2) already answers the cached token; a new token of the revoked key is
    // an unknown kid after it, and costs the one refetch the cooldown allows (hit 3).
    expect(await codeOf(v.verify(cached))).toBe('unknown_kid');
    expect(jwks.hits).toBe(2);
    expect(await codeOf(v.verify(await token(keyA, { now: clock })))).toBe('unknown_kid');
    expect(jwks.hits).toBe(3);
  });

  it('failure E: after a failed fetch the stale copy serves without waiting, up to the stale-if-error the issuer sent', async () => {
    jwks.cacheControl = 'public, max-age=300, stale-while-revalidate=0, stale-if-error=600';
    const v = verifier({ tokenCache: { maxEntries: 0 } });
    await v.verify(await token(keyA, { now: T0 }));
    jwks.fault = 503;
    clock = T0 + 301_000;
    expect(await codeOf(v.verify(await token(keyA, { now: clock })))).toBe('accepted');
    await settled(v);
    expect(v.status().jwks).toMatchObject({ usable: true, lastError: 'HTTP 503' });
    jwks.delayMs = 1_500; // the issuer hangs too: a failing issuer is not waited for
    clock = T0 + 600_000;
    const started = performance.now();
    expect(await codeOf(v.verify(await token(keyA, { now: clock })))).toBe('accepted');
    expect(performance.now() - started).toBeLessThan(300);
    await settled(v);
    jwks.delayMs = 0;
    clock = T0 + 601_000;
    expect(await codeOf(v.verify(await token(keyA, { now: clock })))).toBe('jwks_unavailable');
    expect(v.status().jwks.usable).toBe(false);
  });
});

describe('issue 12 G: more keys than the verifier keeps', () => {
  /** `n` keys; in the JWKS, index 0 stands for the active key, 1 for next, then retiring keys newest first (the issuer's order). */
  async function manyKeys(n: number): Promise<TestKey[]> {
    return Promise.all(Array.from({ length: n }, () => makeKey()));
  }

  it('failure G: the limits are named constants of one module, src/verifier/limits.ts (also exported by the index)', async () => {
    const limits = await import('../../src/verifier/limits.js');
    const index = await import('../../src/verifier/index.js');
    expect({ keys: limits.MAX_JWKS_KEYS, bytes: limits.MAX_JWKS_BYTES, token: limits.MAX_TOKEN_BYTES }).toEqual({
      keys: 100,
      bytes: 256 * 1024,
      token: 8 * 1024,
    });
    expect({ keys: index.MAX_JWKS_KEYS, bytes: index.MAX_JWKS_BYTES }).toEqual({ keys: 100, bytes: 256 * 1024 });
  });

  it('failure G: over 100 keys, the first 100 in document order are kept (active, next, newest retiring) and the rest are reported, not fatal', async () => {
    const keys = await manyKeys(202);
    jwks.keys = keys.map((k) => k.publicJwk);
    const v = verifier();
    await v.refresh();
    for (const i of [0, 1, 2, 99]) expect([i, await codeOf(v.verify(await token(keys[i]!, { now: T0 })))]).toEqual([i, 'accepted']);
    for (const i of [100, 201]) expect([i, await codeOf(v.verify(await token(keys[i]!, { now: T0 })))]).toEqual([i, 'unknown_kid']);
    expect(v.status().jwks).toMatchObject({ usable: true, droppedKeys: 102 });
    expect(v.status().jwks.kids).toEqual(keys.slice(0, 100).map((k) => k.kid));
    expect(events).toContainEqual({ event: 'jwks_key_ignored', why: 'over the limit of 100 keys', dropped: 102 });
  });

  it('failure G: a JWKS of 502 keys (over 64 KiB) is read and cut to 100 keys instead of refused whole', async () => {
    const keys = await manyKeys(502);
    jwks.keys = keys.map((k) => k.publicJwk);
    expect(JSON.stringify({ keys: jwks.keys }).length).toBeGreaterThan(64 * 1024);
    const v = verifier();
    expect(await codeOf(v.verify(await token(keys[0]!, { now: T0 })))).toBe('accepted');
    expect(v.status().jwks).toMatchObject({ usable: true, lastError: null, droppedKeys: 402 });
    expect(v.status().jwks.kids).toHaveLength(100);
  });

  it('failure G: a body over MAX_JWKS_BYTES is a failed fetch; the last good copy stays in service', async () => {
    const { MAX_JWKS_BYTES } = await import('../../src/verifier/limits.js');
    jwks.cacheControl = 'max-age=300';
    const v = verifier({ tokenCache: { maxEntries: 0 } });
    await v.verify(await token(keyA, { now: T0 }));
    jwks.keys = [keyA.publicJwk, { kty: 'OKP', crv: 'Ed25519', kid: 'pad', x: 'p'.repeat(MAX_JWKS_BYTES) }];
    clock = T0 + 300_000;
    expect(await codeOf(v.verify(await token(keyA, { now: clock })))).toBe('accepted');
    await settled(v);
    expect(v.status().jwks).toMatchObject({ usable: true, kids: [keyA.kid], lastError: `body over ${MAX_JWKS_BYTES} bytes` });
  });
});
