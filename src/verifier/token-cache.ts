/**
 * Tokens that passed every check, so that a repeated token costs a lookup, not a signature check.
 *
 * Keyed by the whole token string: equal strings are the same signed bytes, so an entry says
 * nothing about any other token. An entry lives until its token's `exp` plus the clock skew (the
 * moment verification itself would refuse it), and leaves early when its kid leaves the JWKS
 * (revocation). Bounded in entries; when full, the oldest goes (insertion order is close to expiry
 * order, since tokens of one issuer share their lifetimes).
 */
import type { VerifiedClaims } from './verify.js';

/** Ten thousand tokens of at most 8 KiB: at most ~80 MiB, in practice ~10 MiB (tokens are ~1 KiB). */
export const DEFAULT_MAX_ENTRIES = 10_000;

interface Entry {
  claims: VerifiedClaims;
  kid: string;
  /** ms since epoch; the entry is valid while now < until. */
  until: number;
}

export class TokenCache {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly maxEntries: number = DEFAULT_MAX_ENTRIES) {
    if (!Number.isInteger(maxEntries) || maxEntries < 0) throw new TypeError('tokenCache.maxEntries must be an integer >= 0');
  }

  get size(): number {
    return this.entries.size;
  }

  get(token: string, now: number): VerifiedClaims | undefined {
    const e = this.entries.get(token);
    if (e === undefined) return undefined;
    if (now < e.until) return e.claims;
    this.entries.delete(token);
    return undefined;
  }

  set(token: string, claims: VerifiedClaims, kid: string, until: number, now: number): void {
    if (this.maxEntries === 0 || until <= now) return;
    if (this.entries.size >= this.maxEntries && !this.entries.has(token)) this.evict();
    this.entries.set(token, { claims, kid, until });
  }

  /** Drops the entries whose kid is not in `kids` (a revoked or removed key). */
  retainKids(kids: ReadonlySet<string>): number {
    let dropped = 0;
    for (const [token, e] of this.entries) {
      if (!kids.has(e.kid)) {
        this.entries.delete(token);
        dropped++;
      }
    }
    return dropped;
  }

  clear(): void {
    this.entries.clear();
  }

  /**
   * Drops the oldest entry, expired or not: O(1) on every insert into a full cache. Expired entries
   * elsewhere leave when they are looked up or reach the front.
   */
  private evict(): void {
    const oldest = this.entries.keys().next();
    if (!oldest.done) this.entries.delete(oldest.value);
  }
}
