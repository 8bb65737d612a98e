/**
 * The isolate's copy of the active private signing key, imported once as a CryptoKey.
 *
 * docs/architecture.md, "Isolate caches": an isolate may keep it at most 60 s and never sign with a key that is not published.
 * The key authority hands it out with `useUntil` = min(now + 60 s, next scheduled rotation), and
 * a retiring key stays published long enough to cover that minute (key-timing.ts, retentionSeconds).
 * An admin rotation or revocation through this isolate clears it at once.
 */
import { importJWK } from 'jose';
import { createIsolateCache, type IsolateCache } from './isolate-cache.js';
import type { SigningKey } from './key-authority.js';
import type { ActiveSigningKey } from './tokens.js';

export type SigningKeyCache = IsolateCache<ActiveSigningKey>;

export function createSigningKeyCache(fetchKey: () => Promise<SigningKey>, now: () => number = Date.now): SigningKeyCache {
  return createIsolateCache(async () => {
    const k = await fetchKey();
    return { value: { kid: k.kid, key: (await importJWK(k.privateJwk, 'EdDSA')) as CryptoKey }, until: k.useUntil };
  }, now);
}
