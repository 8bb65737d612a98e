/**
 * The isolate's copy of the published JWKS, so that serving /.well-known/jwks.json does not call
 * the KeyAuthority on every request.
 *
 * An entry lives at most JWKS_ISOLATE_CACHE_MS, and never past the moment the set changes on
 * schedule. That bound adds to the age of what a verifier holds; it is kept well under the
 * default clock skew, which is the slack the timing invariants leave for it. Concurrent misses
 * share one fetch. An admin change made through this isolate clears it at once.
 */
import { createIsolateCache, type IsolateCache } from './isolate-cache.js';
import type { PublishedKeys } from './key-authority.js';
import type { PublicJwk } from './keys.js';

/** Five seconds: a small fraction of the default 30 s clock skew the invariants reserve. */
export const JWKS_ISOLATE_CACHE_MS = 5_000;

interface JwksSnapshot {
  body: string;
  etag: string;
  keys: PublicJwk[];
}

export type JwksCache = IsolateCache<JwksSnapshot>;

async function etagOf(body: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(body)));
  let hex = '';
  for (const b of digest.subarray(0, 12)) hex += b.toString(16).padStart(2, '0');
  return `"${hex}"`;
}

export function createPublishedKeysCache(fetchKeys: () => Promise<PublishedKeys>, now: () => number = Date.now): JwksCache {
  return createIsolateCache(async () => {
    const published = await fetchKeys();
    const body = JSON.stringify({ keys: published.keys });
    const value: JwksSnapshot = { body, etag: await etagOf(body), keys: published.keys };
    return { value, until: Math.min(now() + JWKS_ISOLATE_CACHE_MS, published.changesAt) };
  }, now);
}
