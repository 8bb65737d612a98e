/**
 * The isolate's copy of the published JWKS, so that serving /.well-known/jwks.json does not call
 * the KeyAuthority on every request.
 *
 * An entry lives at most JWKS_ISOLATE_CACHE_MS, and never past the moment the set changes on
 * schedule. That bound adds to the age of what a verifier holds; it is kept well under the
 * default clock skew, which is the slack the timing invariants leave for it. Concurrent misses
 * share one fetch. An admin change made through this isolate clears it at once.
 */
import type { PublishedKeys } from './key-authority.js';
import type { PublicJwk } from './keys.js';

/** Five seconds: a small fraction of the default 30 s clock skew the invariants reserve. */
export const JWKS_ISOLATE_CACHE_MS = 5_000;

export interface JwksSnapshot {
  body: string;
  etag: string;
  keys: PublicJwk[];
}

export interface JwksCache {
  get(): Promise<JwksSnapshot>;
  invalidate(): void;
}

export async function etagOf(body: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(body)));
  let hex = '';
  for (const b of digest.subarray(0, 12)) hex += b.toString(16).padStart(2, '0');
  return `"${hex}"`;
}

export function createJwksCache(fetchKeys: () => Promise<PublishedKeys>, now: () => number = Date.now): JwksCache {
  let entry: { snapshot: JwksSnapshot; expiresAt: number } | undefined;
  let inflight: Promise<JwksSnapshot> | undefined;
  let generation = 0;

  async function load(): Promise<JwksSnapshot> {
    const started = generation;
    const published = await fetchKeys();
    const body = JSON.stringify({ keys: published.keys });
    const snapshot: JwksSnapshot = { body, etag: await etagOf(body), keys: published.keys };
    // A fetch that began before an invalidation may carry the old set: serve it, do not keep it.
    if (started === generation) {
      entry = { snapshot, expiresAt: Math.min(now() + JWKS_ISOLATE_CACHE_MS, published.changesAt) };
    }
    return snapshot;
  }

  return {
    async get() {
      if (entry && now() < entry.expiresAt) return entry.snapshot;
      inflight ??= load().finally(() => {
        inflight = undefined;
      });
      return inflight;
    },
    invalidate() {
      generation++;
      entry = undefined;
      inflight = undefined;
    },
  };
}
