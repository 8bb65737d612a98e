/**
 * Per-user access tokens for the gateway path (DESIGN §3 "A user request"), kept in the isolate
 * and reused until half their life, so most gateway requests cost no signature.
 *
 * An entry is also dropped when the isolate's signing key changes (rotation or revocation seen by
 * this isolate), so a cached token never outlives the key it was signed with by more than the
 * signing-key cache allows.
 */
import type { Minted } from './tokens.js';

/** Users remembered per isolate; beyond this the map starts afresh (cheap, and bounds memory). */
export const USER_TOKEN_CACHE_MAX = 1000;

export interface UserTokenCache {
  get(user: string, kid: string): Promise<string>;
}

export function createUserTokenCache(mint: (user: string) => Promise<Minted & { kid: string }>, ttlSeconds: number, now: () => number = Date.now): UserTokenCache {
  const entries = new Map<string, { token: string; kid: string; reuseUntil: number }>();
  const inflight = new Map<string, Promise<string>>();
  return {
    async get(user, kid) {
      const hit = entries.get(user);
      if (hit && hit.kid === kid && now() < hit.reuseUntil) return hit.token;
      let p = inflight.get(user);
      if (!p) {
        const started = now();
        p = mint(user)
          .then((m) => {
            if (entries.size >= USER_TOKEN_CACHE_MAX) entries.clear();
            entries.set(user, { token: m.token, kid: m.kid, reuseUntil: started + (ttlSeconds * 1000) / 2 });
            return m.token;
          })
          .finally(() => inflight.delete(user));
        inflight.set(user, p);
      }
      return p;
    },
  };
}
