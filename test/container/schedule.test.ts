import { describe, expect, it } from 'vitest';
import { BACKOFF_BASE_MS, BACKOFF_MAX_MS, backoffDelay, refreshAt, refusedDelay } from '../../container/agent/schedule.js';

const IAT = 1_800_000_000; // epoch seconds
const EXP = IAT + 600;

describe('refreshAt', () => {
  it('falls within 40%..60% of the lifetime for every random value', () => {
    for (let i = 0; i <= 100; i++) {
      const at = refreshAt(IAT, EXP, IAT * 1000, i / 100);
      expect(at).toBeGreaterThanOrEqual(IAT * 1000 + 0.4 * 600_000);
      expect(at).toBeLessThanOrEqual(IAT * 1000 + 0.6 * 600_000);
    }
    expect(refreshAt(IAT, EXP, IAT * 1000, 0)).toBe(IAT * 1000 + 240_000);
    expect(refreshAt(IAT, EXP, IAT * 1000, 0.5)).toBe(IAT * 1000 + 300_000);
  });

  it('never schedules in the past: a token read back late refreshes at once', () => {
    const late = (IAT + 500) * 1000;
    expect(refreshAt(IAT, EXP, late, 0.5)).toBe(late);
  });

  it('never later than 80% of the lifetime', () => {
    for (let i = 0; i <= 10; i++) expect(refreshAt(IAT, EXP, 0, i / 10)).toBeLessThanOrEqual(IAT * 1000 + 0.8 * 600_000);
  });
});

describe('backoffDelay', () => {
  it('grows exponentially from 1 s and caps at 5 min, with full jitter', () => {
    const top = (n: number) => backoffDelay(n, 0.999999);
    expect(top(1)).toBe(BACKOFF_BASE_MS - 1);
    expect(top(2)).toBe(2 * BACKOFF_BASE_MS - 1);
    expect(top(5)).toBe(16 * BACKOFF_BASE_MS - 1);
    expect(top(9)).toBe(256 * BACKOFF_BASE_MS - 1);
    expect(top(10)).toBe(BACKOFF_MAX_MS - 1);
    expect(top(100)).toBe(BACKOFF_MAX_MS - 1);
    for (let n = 1; n < 30; n++) {
      expect(backoffDelay(n, 0)).toBe(0);
      expect(backoffDelay(n, 0.5)).toBeLessThanOrEqual(BACKOFF_MAX_MS / 2);
    }
  });

  it('respects a smaller configured maximum', () => {
    expect(backoffDelay(20, 0.999999, 4000)).toBe(3999);
  });
});

describe('refusedDelay', () => {
  it('waits between 80% and 100% of the maximum backoff', () => {
    expect(refusedDelay(0)).toBe(0.8 * BACKOFF_MAX_MS);
    expect(refusedDelay(0.999999)).toBeLessThanOrEqual(BACKOFF_MAX_MS);
    expect(refusedDelay(0.5)).toBe(0.9 * BACKOFF_MAX_MS);
  });
});
