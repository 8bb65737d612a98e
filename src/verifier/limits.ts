/**
 * Every limit and timing rule of the verifier, with its reason, in one place: the JWKS cache
 * (jwks.ts) reads them, and the issuer's configuration can check against them that what it
 * publishes stays within what a verifier accepts (a JWKS over MAX_JWKS_BYTES is refused whole,
 * keys past MAX_JWKS_KEYS are ignored).
 */
export { MAX_TOKEN_BYTES } from '../token-profile.js';

/**
 * Keys past this many in a JWKS are ignored (the copy keeps the first ones, in document order, and
 * reports how many it dropped). The issuer publishes its active and next keys first, then its
 * retiring keys newest first, so a prefix keeps the keys that can still have signed a live token.
 * Our issuer publishes two or three keys; 100 leaves room for any sane rotation practice.
 */
export const MAX_JWKS_KEYS = 100;

/**
 * The largest JWKS body read, in bytes; a larger one is a failed fetch (the last good copy stays
 * in service). Our issuer's keys are about 160 bytes each, so 100 of them take 16 KiB; 256 KiB
 * holds 100 keys of 2 KiB (x5c chains, from other issuers) and lets a JWKS that has grown far
 * past the key limit (502 keys, 79 KB, in issue 12 G) be read and cut to the limit instead of
 * refused whole, while bounding what a faulty issuer can make a verifier buffer.
 */
export const MAX_JWKS_BYTES = 256 * 1024;

/** Ten seconds: short enough for any sane issuer setting, long enough that `max-age=0` is not a fetch per request. */
export const DEFAULT_MIN_AGE_S = 10;

/** One hour: a verifier rechecks at least this often even if the issuer asks for longer. */
export const DEFAULT_MAX_AGE_S = 3_600;

/** The issuer's own default JWKS max-age (docs/architecture.md, "Timing invariants"), for a response that sends none. */
export const DEFAULT_AGE_S = 300;

/**
 * After a successful fetch, a kid that is not in the copy refetches at most once per 30 s
 * (docs/architecture.md, "Verifier"), one fetch in flight: the copy is what the issuer publishes now, so a flood of made-up kids
 * costs the issuer one request per verifier per 30 s.
 */
export const DEFAULT_COOLDOWN_S = 30;

/**
 * After a failed fetch, a caller that cannot be answered without a fetch (an unknown kid, or no
 * usable copy at all) retries at most once a second, one fetch in flight. Such requests are
 * refused until a fetch succeeds, so recovery must follow the issuer within about a second (a key
 * made during a JWKS outage, issue 12 D); once a second per verifier is still no load on an
 * issuer that is coming back. A success puts unknown kids back under DEFAULT_COOLDOWN_S.
 */
export const RETRY_AFTER_FAILURE_MS = 1_000;

/**
 * The longest a copy is used without any answer from the issuer, counted from the fetch: 24 h, the
 * `stale-if-error=86400` the issuer sends (a smaller stale-if-error in the response wins). Past it
 * every token is refused with `jwks_unavailable`: a verifier cut off that long may miss revocations.
 */
export const DEFAULT_MAX_STALE_S = 86_400;

/**
 * Past max-age, a request waits for the revalidation, but at most this long; an issuer that has not
 * answered by then is taken as failing for that request, which then uses the stale copy
 * (`stale-if-error`) while the one refetch goes on. A healthy issuer answers its JWKS in
 * milliseconds, so its answer, and a revocation in it, counts at max-age exactly, as the rotation
 * runbook promises; half a second keeps every request well under a second while the JWKS hangs
 * (issue 12 E). The issuer's `stale-while-revalidate=60` would let a copy serve unchecked for a
 * minute past max-age: not used, since that minute would delay revocations. Once a fetch has
 * failed, nobody waits at all.
 */
export const REVALIDATE_WAIT_MS = 500;

/**
 * One fetch's time limit. Only requests that cannot be answered without the fetch wait for all of
 * it (an unknown kid, no usable copy); it also bounds how long a hung fetch holds the one fetch slot, so a
 * JWKS that comes back after hanging is seen within this time.
 */
export const DEFAULT_TIMEOUT_S = 5;
