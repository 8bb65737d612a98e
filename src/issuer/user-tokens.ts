/**
 * Per-user access tokens for the gateway path (docs/architecture.md, "Gateway traffic and verification"), kept in the isolate
 * and reused until half their life, so most gateway requests cost no signature.
 *
 * A token carries the user's client address (`client_ip`), so an entry is kept per (user,
 * address): one user's token seen at one address is never sent for a request from another, or
 * the gateway would attribute that request to the first address.
 *
 * An entry is also dropped when the isolate's signing key changes (rotation or revocation seen by
 * this isolate), so a cached token never outlives the key it was signed with by more than the
 * signing-key cache allows.
 *
 * Concurrent misses for one pair share one mint, waited for until MINT_DEADLINE_MS after it
 * started, by the rule of isolate-cache.ts: a mint started by a request that has since ended may
 * never settle on Workers, so past its deadline a waiting request mints for itself.
 */
import { awaitShared, LOAD_DEADLINE_MS, type SharedLoad } from './isolate-cache.js';
import type { Minted } from './tokens.js';

/**
 * (user, address) pairs remembered per isolate; beyond this the map starts afresh (cheap, and
 * bounds memory: a user who moves between networks adds an entry per address). A miss costs one
 * signature, so forgetting is safe.
 */
export const USER_TOKEN_CACHE_MAX = 1000;

/**
 * How long a shared mint is waited for: a mint first gets the signing key from its isolate cache,
 * which may itself take up to two LOAD_DEADLINE_MS (a wait behind a load that never settles, then
 * its own load); signing adds milliseconds.
 */
const MINT_DEADLINE_MS = 2 * LOAD_DEADLINE_MS;

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
  deadlineMs: number = MINT_DEADLINE_MS,
): UserTokenCache {
  const entries = new Map<string, { token: string; kid: string; reuseUntil: number }>();
  const inflight = new Map<string, SharedLoad<string>>();
  return {
    get(user, clientIp, kid) {
      const key = keyOf(user, clientIp);
      const start = (): SharedLoad<string> => {
        const started = now();
        const l: SharedLoad<string> = {
          deadline: Date.now() + deadlineMs,
          promise: mint(user, clientIp)
            .then((m) => {
              // Stored only while it is the current mint: a newer one has replaced it otherwise.
              if (inflight.get(key) !== l) return m.token;
              if (entries.size >= USER_TOKEN_CACHE_MAX) entries.clear();
              entries.set(key, { token: m.token, kid: m.kid, reuseUntil: started + (ttlSeconds * 1000) / 2 });
              return m.token;
            })
            .finally(() => {
              if (inflight.get(key) === l) inflight.delete(key);
            }),
        };
        inflight.set(key, l);
        return l;
      };
      return awaitShared(
        () => {
          const hit = entries.get(key);
          return hit && hit.kid === kid && now() < hit.reuseUntil ? { value: hit.token } : undefined;
        },
        () => inflight.get(key),
        start,
        'user token cache',
        deadlineMs,
      );
    },
    get size() {
      return entries.size;
    },
  };
}
