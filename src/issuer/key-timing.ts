/**
 * The key-timing policy: how long an isolate may sign with a cached key, how long a retiring key
 * stays published, and the invariants the configured durations must keep for that to hold. The
 * config (src/config.ts) fills a Timing from the env and calls checkKeyTiming; keys.ts and the key
 * authority apply the rest. A leaf of issuer/: it imports nothing of config.ts, so config.ts may
 * call it without a circle.
 */
import { ConfigError } from './errors.js';
import { jwksWithinVerifierLimits } from './jwks-bounds.js';

/** The configured durations, all in seconds. */
export interface Timing {
  accessTokenTtl: number;
  agentTokenTtl: number;
  jwksMaxAge: number;
  clockSkew: number;
  rotationPeriod: number;
}

/**
 * How long a Worker isolate may keep using a cached private signing key. An isolate may therefore
 * still sign with a key for this long after the key authority retired it, and the retention of a
 * retiring key counts from then.
 */
export const SIGNING_KEY_CACHE_SECONDS = 60;

/**
 * How long a retiring key stays published after the key authority stops handing it out for
 * signing: isolates may sign with it for SIGNING_KEY_CACHE_SECONDS more, its last token lives
 * the max TTL, a verifier may hold a JWKS fetched just before for JWKS_MAX_AGE, plus skew.
 */
export function retentionSeconds(t: Timing): number {
  return SIGNING_KEY_CACHE_SECONDS + maxTokenTtl(t) + t.jwksMaxAge + t.clockSkew;
}

/** The longest token lifetime the issuer can hand out. */
export function maxTokenTtl(t: Timing): number {
  return Math.max(t.accessTokenTtl, t.agentTokenTtl);
}

/** Checks one rule and throws a ConfigError naming the option when it is broken. */
function rule(ok: boolean, option: string, text: string): void {
  if (!ok) throw new ConfigError(option, text);
}

/**
 * The three timing invariants of key rotation. A next key signs one rotation period after it is
 * published, and a retiring key is dropped one retention (see keys.ts) after it stops signing,
 * so each invariant reduces to a bound on the rotation period.
 */
function checkTimingInvariants(t: Timing): void {
  rule(
    t.rotationPeriod >= t.jwksMaxAge + t.clockSkew,
    'ROTATION_PERIOD',
    'a next key must be published at least JWKS_MAX_AGE + CLOCK_SKEW before it signs, ' +
      `so ROTATION_PERIOD must be >= ${t.jwksMaxAge + t.clockSkew}s`,
  );
  const retention = retentionSeconds(t);
  rule(
    t.rotationPeriod >= retention,
    'ROTATION_PERIOD',
    'a retiring key must stay published max token TTL + JWKS_MAX_AGE + CLOCK_SKEW (+60s isolate key cache) ' +
      `after it stops signing, and be gone before the next rotation retires another, so ROTATION_PERIOD must be >= ${retention}s`,
  );
  const option = t.agentTokenTtl >= t.accessTokenTtl ? 'AGENT_TOKEN_TTL' : 'ACCESS_TOKEN_TTL';
  rule(
    maxTokenTtl(t) * 4 <= t.rotationPeriod,
    option,
    `the longest token TTL must be at most a quarter of ROTATION_PERIOD (${Math.floor(t.rotationPeriod / 4)}s)`,
  );
}

/**
 * The whole key-timing check a config must pass: the timing invariants, then the bound on the
 * largest JWKS the rotation rules can publish (jwks-bounds.ts) against what verifiers read.
 */
export function checkKeyTiming(t: Timing): void {
  checkTimingInvariants(t);
  const jwks = jwksWithinVerifierLimits();
  rule(
    jwks.ok,
    'MAX_RETIRING_KEYS',
    `the largest JWKS this issuer can publish (${jwks.keys} keys, ${jwks.bytes} bytes) must fit what verifiers keep and read (src/verifier/limits.ts)`,
  );
}
