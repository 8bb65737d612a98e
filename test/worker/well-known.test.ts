import { runInDurableObject, SELF } from 'cloudflare:test';
import { beforeEach, describe, expect, it } from 'vitest';
import { createPublishedKeysCache, JWKS_ISOLATE_CACHE_MS } from '../../src/issuer/jwks-cache.js';
import type { KeyAuthority, PublishedKeys } from '../../src/issuer/key-authority.js';
import { etagMatches } from '../../src/routes/well-known.js';
import { BASE, call, freshStorage, keyAuthority } from './helpers.js';

beforeEach(freshStorage);

describe('GET /.well-known/jwks.json', () => {
  it('publishes the active and next keys with cache headers and an ETag', async () => {
    const res = await call('/.well-known/jwks.json');
    expect(res.status).toBe(200);
    expect(res.headers.get('Content-Type')).toBe('application/json');
    expect(res.headers.get('Cache-Control')).toBe('public, max-age=300, stale-while-revalidate=60, stale-if-error=86400');
    expect(res.headers.get('ETag')).toMatch(/^"[0-9a-f]{24}"$/);
    const body = (await res.json()) as { keys: Record<string, string>[] };
    expect(body.keys).toHaveLength(2);
    for (const k of body.keys) {
      expect(Object.keys(k).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x']);
      expect(k).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' });
    }
  });

  it('answers 304 to a matching If-None-Match, and 200 to a stale one', async () => {
    const first = await call('/.well-known/jwks.json');
    const etag = first.headers.get('ETag')!;
    const again = await call('/.well-known/jwks.json', { headers: { 'If-None-Match': etag } });
    expect(again.status).toBe(304);
    expect(again.headers.get('ETag')).toBe(etag);
    expect(again.headers.get('Cache-Control')).toContain('max-age=300');
    expect(await again.text()).toBe('');
    const other = await call('/.well-known/jwks.json', { headers: { 'If-None-Match': '"0000"' } });
    expect(other.status).toBe(200);
  });

  it('the ETag changes when the published set changes', async () => {
    const before = (await call('/.well-known/jwks.json')).headers.get('ETag');
    await runInDurableObject(keyAuthority(), (i: KeyAuthority) => i.rotate(true));
    const after = await call('/.well-known/jwks.json');
    expect(after.headers.get('ETag')).not.toBe(before);
    expect((await call('/.well-known/jwks.json', { headers: { 'If-None-Match': before! } })).status).toBe(200);
  });

  it('is served from the isolate cache, not from the Durable Object, on every request', async () => {
    const first = (await (await SELF.fetch(`${BASE}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
    // Change the set behind the Worker's back: the cached copy keeps being served for a bounded time.
    await runInDurableObject(keyAuthority(), (i: KeyAuthority) => i.rotate(true));
    const second = (await (await SELF.fetch(`${BASE}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
    expect(second).toEqual(first);
  });

  it('rfc 9110 If-None-Match: lists, weak tags and *', () => {
    expect(etagMatches('"a", W/"b"', '"b"')).toBe(true);
    expect(etagMatches('*', '"b"')).toBe(true);
    expect(etagMatches('"c"', '"b"')).toBe(false);
    expect(etagMatches(undefined, '"b"')).toBe(false);
  });
});

describe('JWKS isolate cache', () => {
  const published = (kid: string, changesAt = Number.POSITIVE_INFINITY): PublishedKeys => ({
    keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'x', kid, alg: 'EdDSA', use: 'sig' }],
    changesAt,
  });

  it('shares one fetch among concurrent misses and expires after the bound', async () => {
    let now = 1_000_000;
    let calls = 0;
    const cache = createPublishedKeysCache(
      async () => {
        calls++;
        return published(`k${calls}`);
      },
      () => now,
    );
    const many = await Promise.all(Array.from({ length: 20 }, () => cache.get()));
    expect(calls).toBe(1);
    expect(new Set(many.map((s) => s.etag)).size).toBe(1);
    now += JWKS_ISOLATE_CACHE_MS - 1;
    await cache.get();
    expect(calls).toBe(1);
    now += 1;
    expect((await cache.get()).keys[0]!.kid).toBe('k2');
  });

  it('never keeps an entry past a scheduled change, and drops it on invalidate', async () => {
    let now = 0;
    let calls = 0;
    const cache = createPublishedKeysCache(
      async () => published(`k${++calls}`, now + 100),
      () => now,
    );
    await cache.get();
    now = 100;
    await cache.get();
    expect(calls).toBe(2);
    cache.invalidate();
    await cache.get();
    expect(calls).toBe(3);
  });
});

describe('discovery documents', () => {
  for (const path of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']) {
    it(`${path} names the issuer, its JWKS and token endpoint`, async () => {
      const res = await call(path);
      expect(res.status).toBe(200);
      expect(res.headers.get('Cache-Control')).toBe('public, max-age=300');
      expect(await res.json()).toMatchObject({
        issuer: 'http://127.0.0.1:8787',
        jwks_uri: 'http://127.0.0.1:8787/.well-known/jwks.json',
        token_endpoint: 'http://127.0.0.1:8787/oauth/token',
        grant_types_supported: ['client_credentials'],
        token_endpoint_auth_methods_supported: ['private_key_jwt'],
        token_endpoint_auth_signing_alg_values_supported: ['EdDSA', 'Ed25519'],
        id_token_signing_alg_values_supported: ['EdDSA'],
      });
    });
  }

  it('takes the issuer from configuration, never from the Host header', async () => {
    const res = await call('/.well-known/openid-configuration', { headers: { Host: 'evil.example', 'X-Forwarded-Host': 'evil.example' } });
    expect(JSON.stringify(await res.json())).not.toContain('evil');
  });
});
