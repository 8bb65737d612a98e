/**
 * Per-user access tokens for the gateway path (DESIGN §3 "A user request"), kept in the isolate
 * and reused until half their life, so most gateway requests cost no signature.
 *
 * A token carries the user's client address (`client_ip`), so an entry is kept per (user,
 * address): one user's token seen at one address is never sent for a request from another, or
 * the gateway would attribute that request to the first address.
 *
 * An entry is also dropped when the isolate's signing key changes (rotation or revocation seen by
 * this isolate), so a cached token never outlives the key it was signed with by more than the
 * signing-key cache allows.
 */
import type { Minted } from './tokens.js';

/**
 * (user, address) pairs remembered per isolate; beyond this the map starts afresh (cheap, and
 * bounds memory: a user who moves between networks adds an entry per address). A miss costs one
 * signature, so forgetting is safe.
 */
export const USER_TOKEN_CACHE_MAX = 1000;

export interface UserTokenCache {
  /** `clientIp` undefined: a token without `client_ip`, kept apart from every address. */
  get(user: string, clientIp: string | undefined, kid: string): Promise<string>;
  /** Entries held now (for tests of the bound). */
  readonly size: number;
}

/**
 * The cache key of a (user, address) pair. JSON, so no user name can spell another pair: a user
 * `a\n1.2.3.4` with no address and `a` at 1.2.3.4 get different keys.
 */
function keyOf(user: string, clientIp: string | undefined): string {
  return JSON.stringify([user, clientIp ?? null]);
}

export function createUserTokenCache(
  mint: (user: string, clientIp: string | undefined) => Promise<Minted & { kid: string }>,
  ttlSeconds: number,
  now: () => number = Date.now,
): UserTokenCache {
  const entries = new Map<string, { token: string; kid: string; reuseUntil: number }>();
  const inflight = new Map<string, Promise<string>>();
  return {
    async get(user, clientIp, kid) {
      const key = keyOf(user, clientIp);
      const hit = entries.get(key);
      if (hit && hit.kid === kid && now() < hit.reuseUntil) return hit.token;
      let p = inflight.get(key);
      if (!p) {
        const started = now();
        p = mint(user, clientIp)
          .then((m) => {
            if (entries.size >= USER_TOKEN_CACHE_MAX) entries.clear();
            entries.set(key, { token: m.token, kid: m.kid, reuseUntil: started + (ttlSeconds * 1000) / 2 });
            return m.token;
          })
          .finally(() => inflight.delete(key));
        inflight.set(key, p);
      }
      return p;
    },
    get size() {
      return entries.size;
    },
  };
}
