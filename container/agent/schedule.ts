/**
 * When to refresh, and how long to wait after a failure (docs/architecture.md, "Refresh"). Pure functions of
 * the token's times and a random number in [0, 1), so tests need no clock.
 */

/** Refresh half-way through the token's life... */
const REFRESH_POINT = 0.5;
/** ...give or take 10% of the lifetime, so a fleet started together does not refresh together... */
const REFRESH_JITTER = 0.1;
/** ...and never later than 80%, which leaves a fifth of the life for retries. */
const REFRESH_LATEST = 0.8;
/** Backoff after a failure: exponential from 1 s... */
export const BACKOFF_BASE_MS = 1_000;
/** ...up to 5 minutes, with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"). */
export const BACKOFF_MAX_MS = 5 * 60_000;

/**
 * Never two scheduled refreshes closer than this. Every token is an audit row at the issuer, which
 * keeps 1,000 per sandbox (README "Audit"): a schedule gone wrong (a clock that jumps, a token
 * that claims a lifetime of a second) must not overwrite that trail within seconds, as the refresh
 * storm of issue 12 B did (4,499 tokens in 36 s). At one refresh per 2 s it would take over half
 * an hour. The shortest token the issuer issues (AGENT_TOKEN_TTL 10 s) is refreshed after 4 s at
 * the earliest, so the gap never delays a normal refresh.
 */
export const MIN_REFRESH_GAP_MS = 2_000;

/**
 * The moment (epoch ms, local clock) to refresh a token whose life of `lifetimeMs` (its exp - iat)
 * began, on this machine's clock, at `startMs`: 40%..60% of the lifetime, capped at 80%, no sooner
 * than MIN_REFRESH_GAP_MS after `startMs`, and never before `now`.
 *
 * Only durations of the token are used, never its exp against the local clock: an agent whose
 * clock runs ahead of the issuer's would otherwise see every token as half spent on arrival.
 */
export function refreshAt(startMs: number, lifetimeMs: number, now: number, random: number): number {
  const fraction = Math.min(REFRESH_POINT + (random * 2 - 1) * REFRESH_JITTER, REFRESH_LATEST);
  const at = Math.min(startMs + lifetimeMs * fraction, startMs + lifetimeMs * REFRESH_LATEST);
  return Math.max(now, startMs + MIN_REFRESH_GAP_MS, at);
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
