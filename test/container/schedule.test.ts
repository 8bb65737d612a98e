import { describe, expect, it } from 'vitest';
import {
  BACKOFF_BASE_MS,
  BACKOFF_MAX_MS,
  backoffDelay,
  MIN_REFRESH_GAP_MS,
  refreshAt,
  refusedDelay,
} from '../../container/agent/schedule.js';

const START = 1_800_000_000_000; // epoch ms, local clock: when the token's request left
const LIFE = 600_000;

describe('refreshAt', () => {
  it('falls within 40%..60% of the lifetime for every random value', () => {
    for (let i = 0; i <= 100; i++) {
      const at = refreshAt(START, LIFE, START, i / 100);
      expect(at).toBeGreaterThanOrEqual(START + 0.4 * LIFE);
      expect(at).toBeLessThanOrEqual(START + 0.6 * LIFE);
    }
    expect(refreshAt(START, LIFE, START, 0)).toBe(START + 240_000);
    expect(refreshAt(START, LIFE, START, 0.5)).toBe(START + 300_000);
  });

  it('never schedules in the past: a token read back late refreshes at once', () => {
    const late = START + 500_000;
    expect(refreshAt(START, LIFE, late, 0.5)).toBe(late);
  });

  it('never later than 80% of the lifetime', () => {
    for (let i = 0; i <= 10; i++) expect(refreshAt(START, LIFE, 0, i / 10)).toBeLessThanOrEqual(START + 0.8 * LIFE);
  });

  it('failure B: never sooner than MIN_REFRESH_GAP_MS after the last refresh started, even for a token that claims to live a second', () => {
    expect(MIN_REFRESH_GAP_MS).toBeGreaterThanOrEqual(1_000);
    // The issuer's shortest token (10 s) is refreshed at 4 s at the earliest: the gap never delays it.
    expect(MIN_REFRESH_GAP_MS).toBeLessThan(0.4 * 10_000);
    for (const life of [0, 1, 1_000, 3_000]) expect(refreshAt(START, life, START, 0.5)).toBe(START + MIN_REFRESH_GAP_MS);
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
