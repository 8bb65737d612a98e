/**
 * When to refresh, and how long to wait after a failure (DESIGN §3 "Refresh"). Pure functions of
 * the token's times and a random number in [0, 1), so tests need no clock.
 */

/** Refresh half-way through the token's life... */
export const REFRESH_POINT = 0.5;
/** ...give or take 10% of the lifetime, so a fleet started together does not refresh together... */
export const REFRESH_JITTER = 0.1;
/** ...and never later than 80%, which leaves a fifth of the life for retries. */
export const REFRESH_LATEST = 0.8;
/** Backoff after a failure: exponential from 1 s... */
export const BACKOFF_BASE_MS = 1_000;
/** ...up to 5 minutes, with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"). */
export const BACKOFF_MAX_MS = 5 * 60_000;

/**
 * The moment (epoch ms) to refresh a token issued at `iat` and expiring at `exp` (epoch seconds):
 * 40%..60% of its lifetime, capped at 80%, and never before `now` when the token was read back late.
 */
export function refreshAt(iat: number, exp: number, now: number, random: number): number {
  const lifetime = (exp - iat) * 1000;
  const fraction = Math.min(REFRESH_POINT + (random * 2 - 1) * REFRESH_JITTER, REFRESH_LATEST);
  const at = iat * 1000 + lifetime * fraction;
  const latest = iat * 1000 + lifetime * REFRESH_LATEST;
  return Math.max(now, Math.min(at, latest));
}

/** Full-jitter backoff for the n-th consecutive failure (n >= 1): uniform in [0, min(max, base * 2^(n-1))]. */
export function backoffDelay(failures: number, random: number, maxMs = BACKOFF_MAX_MS): number {
  const ceiling = Math.min(maxMs, BACKOFF_BASE_MS * 2 ** Math.max(0, failures - 1));
  return Math.floor(random * ceiling);
}

/**
 * After the issuer refused the bootstrap key: wait near the maximum backoff, so a revoked agent
 * makes a request every few minutes, not a tight loop. Jitter only in the top fifth.
 */
export function refusedDelay(random: number, maxMs = BACKOFF_MAX_MS): number {
  return Math.floor(maxMs * (0.8 + 0.2 * random));
}
