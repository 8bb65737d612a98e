/**
 * A load shared across requests must not jam its cache when the request that started it ends.
 *
 * On Workers a promise belongs to the request whose I/O it waits on. When that request ends
 * (client gone, request cancelled), its pending I/O may never complete: the promise then never
 * settles, for every other request that joined it too, and a cache that clears its in-flight load
 * only when the load settles stays stuck for the isolate's life.
 *
 * The first test does that with the real Worker in workerd: request A misses the JWKS isolate
 * cache while the KeyAuthority is held busy, A is aborted, B arrives and finds A's load in flight,
 * and the KeyAuthority is released past the load's deadline. With a cache that waits for the load
 * to settle, A's load never does (workerd drops it with A) and B never gets an answer.
 *
 * The others model the ended request's load directly, as a promise that never settles: that is
 * all a cache can see of it, as the first test shows, and it lets each cache (the isolate cache,
 * the user-token cache, the verifier's JWKS) be tried with a short deadline. "Request A" there is
 * a call whose promise nobody awaits.
 */
import { runInDurableObject, SELF } from 'cloudflare:test';
import { beforeEach, describe, expect, it } from 'vitest';
import { createIsolateCache, LOAD_DEADLINE_MS } from '../../src/issuer/isolate-cache.js';
import type { KeyAuthority } from '../../src/issuer/key-authority.js';
import { createUserTokenCache } from '../../src/issuer/user-tokens.js';
import { createJwksCache } from '../../src/verifier/jwks.js';
import { BASE, freshStorage, keyAuthority } from './helpers.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const never = <T>() => new Promise<T>(() => undefined);

/** `p`'s value, or 'no answer' once `ms` have passed. */
async function answerWithin<T>(p: Promise<T>, ms: number): Promise<T | 'no answer'> {
  return Promise.race([p, sleep(ms).then(() => 'no answer' as const)]);
}

beforeEach(freshStorage);

describe('a request that ends while its load is in flight', () => {
  it('the real Worker: B, sent while the JWKS load of aborted request A waits on the KeyAuthority, is answered', async () => {
    await runInDurableObject(keyAuthority(), (i: KeyAuthority) => i.published()); // keys exist
    // Warm the Worker on a route without the JWKS cache, so that A reaches the cache at once.
    expect((await SELF.fetch(`${BASE}/.well-known/openid-configuration`)).status).toBe(200);
    // Hold the KeyAuthority: every call to it waits until released.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const holding = runInDurableObject(keyAuthority(), (_i, state) => state.blockConcurrencyWhile(() => gate));
    await sleep(50);

    const abort = new AbortController();
    const a = SELF.fetch(`${BASE}/.well-known/jwks.json`, { signal: abort.signal }).then(
      (r) => `answered ${r.status}`,
      (e: Error) => e.name,
    );
    await sleep(300); // A has missed the cache and its load waits on the KeyAuthority
    abort.abort();
    // A never got an answer: it ended while waiting on the load.
    expect(await a).toBe('AbortError');

    // B misses too and finds A's load in flight.
    const b = SELF.fetch(`${BASE}/.well-known/jwks.json`).then(async (r) => ({
      status: r.status,
      body: (await r.json()) as { keys: unknown[] },
    }));
    // The KeyAuthority answers again only past the load's deadline: B cannot be answered by anything
    // but a load of its own, which must not wait on A's.
    await sleep(LOAD_DEADLINE_MS + 500);
    release();
    await holding;
    expect((await runInDurableObject(keyAuthority(), (i: KeyAuthority) => i.published())).ok).toBe(true);

    const answered = await answerWithin(b, 8_000);
    expect(answered).not.toBe('no answer');
    expect(answered).toMatchObject({ status: 200 });
    expect((answered as { body: { keys: unknown[] } }).body.keys).toHaveLength(2);
    // And the next request is served as well.
    expect(
      await answerWithin(
        SELF.fetch(`${BASE}/.well-known/jwks.json`).then((r) => r.status),
        4_000,
      ),
    ).toBe(200);
  }, 30_000);

  it('isolate cache: past the deadline B loads for itself, and the late result of the left load is never stored', async () => {
    let releaseFirst!: (v: { value: string; until: number }) => void;
    let loads = 0;
    const cache = createIsolateCache<string>(
      () => {
        if (++loads === 1) return new Promise((resolve) => (releaseFirst = resolve));
        return Promise.resolve({ value: `new ${loads}`, until: Date.now() + 60_000 });
      },
      Date.now,
      200,
    );
    void cache.get(); // request A: starts the load, and ends before it settles
    const b = await answerWithin(cache.get(), 2_000);
    expect(b).toMatch(/^new [23]$/); // B's own load (A, still waiting here, may load for itself too)
    const stored = await cache.get();
    expect(stored).toMatch(/^new [23]$/);
    const after = loads;
    // A's load answers after all, with what is now an older copy: it does not replace the new one.
    releaseFirst({ value: 'old', until: Date.now() + 60_000 });
    await sleep(0);
    expect(await cache.get()).toBe(stored);
    expect(loads).toBe(after);
  });

  it('isolate cache: when no load settles, a request fails after two deadlines instead of waiting for ever', async () => {
    let loads = 0;
    const cache = createIsolateCache<string>(() => (loads++, never()), Date.now, 100);
    const r = await answerWithin(
      cache.get().then(
        () => 'served',
        (e: Error) => e.message,
      ),
      2_000,
    );
    expect(r).toMatch(/no load settled within 100 ms/);
    expect(loads).toBe(2);
  });

  it('user tokens: past the deadline B mints for itself', async () => {
    let mints = 0;
    const cache = createUserTokenCache(
      async (user) => {
        if (++mints === 1) return never();
        return { token: `t${mints}:${user}`, exp: 0, kid: 'k' };
      },
      300,
      Date.now,
      200,
    );
    void cache.get('u', undefined, 'k'); // request A
    expect(await answerWithin(cache.get('u', undefined, 'k'), 2_000)).toMatch(/^t[23]:u$/);
    const after = mints;
    expect(await cache.get('u', undefined, 'k')).toMatch(/^t[23]:u$/);
    expect(mints).toBe(after); // kept: the next request needs no mint
  });

  it("verifier JWKS: a fetch that never settles is given up at its deadline and B's fetch answers", async () => {
    const pair = (await crypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify'])) as CryptoKeyPair;
    const jwk = { ...((await crypto.subtle.exportKey('jwk', pair.publicKey)) as JsonWebKey), kid: 'k1' };
    let fetches = 0;
    const jwks = createJwksCache({
      url: 'https://issuer.example/.well-known/jwks.json',
      // The first fetch is A's: its request has ended, so it never settles (its AbortSignal.timeout
      // timer is cancelled with the request as well, which is why it ignores the signal here).
      fetch: (async () => {
        if (++fetches === 1) return never<Response>();
        return new Response(JSON.stringify({ keys: [jwk] }), { headers: { 'cache-control': 'max-age=300' } });
      }) as typeof fetch,
      now: Date.now,
      options: { timeoutSeconds: 0.2 },
    });
    void jwks.getKey('k1'); // request A
    const b = await answerWithin(jwks.getKey('k1'), 4_000);
    expect(b).not.toBe('no answer');
    expect((b as CryptoKey).type).toBe('public');
    expect([2, 3]).toContain(fetches); // A's, then B's own (A, still waiting here, may fetch too)
    expect(jwks.status()).toMatchObject({ usable: true, refreshing: false, failures: 1, lastError: null });
  });
});
