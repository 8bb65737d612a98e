/**
 * The agent's estimate of the issuer's clock (issue 12 C). Samples come from the issuer's answers:
 * the `Date` header when it sends one (any answer, refusals included) and each token's `iat`. Both
 * are whole seconds, so an estimate is good to about a second plus half the round trip; that is
 * far inside the issuer's allowance.
 *
 * Used for two things: to say what is wrong when the issuer refuses an assertion's times, and to
 * sign assertions on the issuer's time, so an agent whose clock is off still gets tokens.
 */

/**
 * The clock difference the issuer allows (its CLOCK_SKEW; 30 s by default, at most 300 s). The
 * issuer does not publish its value, so the agent names the default in its messages; the rules
 * it actually applies are the issuer's.
 */
export const ASSUMED_ISSUER_CLOCK_SKEW_S = 30;

/**
 * Assertions are signed on the issuer's time only while the measured difference is at most this.
 * A bigger one is a broken clock or a bogus `Date` header rather than drift, and following it would
 * let one bad header date assertions far into the future or past; it is reported, not followed.
 */
export const MAX_CLOCK_CORRECTION_MS = 60 * 60_000;

/** The skew is logged again only when it moves by more than this (a clock step, not jitter). */
const CLOCK_SKEW_RELOG_MS = 5_000;

export type SkewSource = 'Date header' | 'token iat';

export class IssuerClock {
  /** The issuer's clock minus the agent's (ms); undefined until measured. */
  offsetMs: number | undefined;
  source: SkewSource | undefined;
  private reported: number | undefined;

  /**
   * One sample: the issuer said `issuerSeconds` (rounded down to a second) at some moment between
   * `sentAt` and `arrivedAt` on the agent's clock. The latest sample wins: clocks step.
   */
  sample(issuerSeconds: number, sentAt: number, arrivedAt: number, source: SkewSource): void {
    if (!Number.isFinite(issuerSeconds)) return;
    this.offsetMs = Math.round(issuerSeconds * 1000 + 500 - (sentAt + arrivedAt) / 2);
    this.source = source;
  }

  /** `local` (agent epoch ms) on the issuer's clock, as far as it is measured and within MAX_CLOCK_CORRECTION_MS. */
  issuerTime(local: number): number {
    const o = this.offsetMs;
    return o !== undefined && Math.abs(o) <= MAX_CLOCK_CORRECTION_MS ? local + o : local;
  }

  /** Whether assertions are being signed on the issuer's time. */
  correcting(): boolean {
    return this.offsetMs !== undefined && Math.abs(this.offsetMs) <= MAX_CLOCK_CORRECTION_MS;
  }

  /** The agent's clock minus the issuer's, in whole seconds (positive: the agent's is ahead). */
  agentAheadS(): number | undefined {
    return this.offsetMs === undefined ? undefined : Math.round(-this.offsetMs / 1000);
  }

  /** True once per new estimate worth a log line: the first, and after a step of CLOCK_SKEW_RELOG_MS. */
  shouldReport(): boolean {
    const o = this.offsetMs;
    if (o === undefined || (this.reported !== undefined && Math.abs(o - this.reported) <= CLOCK_SKEW_RELOG_MS)) return false;
    this.reported = o;
    return true;
  }
}

/** The `Date` header as epoch seconds, or undefined. */
export function parseDateHeader(value: string | null | undefined): number | undefined {
  if (!value) return undefined;
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? Math.floor(ms / 1000) : undefined;
}

/** "differs from the issuer's by 40 s (allowed: 30 s)", the sentence of every clock message. */
export function describeSkew(aheadS: number): string {
  const dir = aheadS > 0 ? 'ahead' : aheadS < 0 ? 'behind' : 'in step';
  return `the agent's clock differs from the issuer's by ${Math.abs(aheadS)} s (allowed: ${ASSUMED_ISSUER_CLOCK_SKEW_S} s); it is ${dir}`;
}
