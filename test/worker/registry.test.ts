/**
 * Failure H: past 1,000 sandboxes, listings and the push on secret change reached only the
 * newest 1,000, silently. The registry is paged now, with the Worker's own sandbox first, and the
 * push reaches every sandbox in bounded batches with retries.
 */
import { env, reset, runInDurableObject } from 'cloudflare:test';
import { beforeEach, describe, expect, it } from 'vitest';
import { SANDBOX_ID } from '../../src/admin-api.js';
import { parseConfig } from '../../src/config.js';
import { PUSH_ATTEMPTS, PUSH_CONCURRENCY, pushOnSecretChange } from '../../src/issuer/push.js';
import { decodeCursor, encodeCursor } from '../../src/issuer/registry.js';
import { adminHeaders, BASE, call, captureLogs, keyAuthority } from './helpers.js';
import { bootstrap } from './token-helpers.js';

/**
 * helpers.freshStorage visits every Durable Object to clear its alarm, which takes seconds with the
 * hundreds these tests address; none of them sets a sandbox alarm, so only the key authority's is cleared.
 */
beforeEach(async () => {
  await runInDurableObject(keyAuthority(), (_i, s) => s.storage.deleteAlarm());
  await reset();
}, 60_000);

const MANY = 1003;

/** Registers `n` more sandboxes, all newer than the real "main", straight into the registry. */
async function registerMany(n: number): Promise<void> {
  await runInDurableObject(keyAuthority(), (_i, s) => {
    const base = Date.now() + 1000;
    for (let i = 0; i < n; i++)
      s.storage.sql.exec('INSERT INTO sandboxes (id, created_at) VALUES (?, ?)', `sb-${String(i).padStart(4, '0')}`, base + i);
  });
}

describe('failure H: listings and the push reach every sandbox, however many', () => {
  it("failure H: the sandbox listing is paged, says how many there are, and leads with the Worker's own sandbox", async () => {
    await bootstrap('main'); // the oldest: the one the old listing left out
    await registerMany(MANY - 1);
    // A small page: each listed sandbox is a Durable Object call.
    const first = (await (await call('/api/admin/sandboxes?limit=20', { headers: adminHeaders() })).json()) as {
      sandboxes: { sandbox: string }[];
      total: number;
      next_cursor?: string;
    };
    expect(first.total).toBe(MANY);
    expect(first.sandboxes).toHaveLength(20);
    expect(first.sandboxes[0]!.sandbox).toBe('main');
    expect(first.next_cursor).toMatch(/^[A-Za-z0-9_-]+$/);
    // Every page of the registry itself, 1,003 ids (the HTTP paging is shown on a smaller set below:
    // each listed sandbox costs the listing one Durable Object call).
    const seen = new Set<string>();
    let after: Parameters<ReturnType<typeof keyAuthority>['sandboxPage']>[1];
    let pages = 0;
    do {
      const page = await keyAuthority().sandboxPage(1000, after, 'main');
      for (const id of page.ids) {
        expect(seen.has(id), id).toBe(false);
        seen.add(id);
      }
      expect(page.total).toBe(MANY);
      after = page.next;
      pages++;
    } while (after);
    expect(pages).toBe(2);
    expect(seen.size).toBe(MANY);
    for (const q of ['cursor=not-ours!', `cursor=${encodeCursor({ createdAt: 1, id: 'BAD ID' })}`, 'limit=0', 'limit=1001']) {
      expect((await call(`/api/admin/sandboxes?${q}`, { headers: adminHeaders() })).status, q).toBe(400);
    }
  }, 60_000);

  it('failure H: GET /api/admin/sandboxes pages through every sandbox with next_cursor, each once', async () => {
    await bootstrap('main');
    await registerMany(24);
    const ids: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const res = await call(`/api/admin/sandboxes?limit=10${cursor ? `&cursor=${cursor}` : ''}`, { headers: adminHeaders() });
      expect(res.status).toBe(200);
      const page = (await res.json()) as { sandboxes: { sandbox: string }[]; total: number; next_cursor?: string };
      expect(page.total).toBe(25);
      ids.push(...page.sandboxes.map((x) => x.sandbox));
      cursor = page.next_cursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(ids[0]).toBe('main');
    expect(new Set(ids).size).toBe(25);
    expect(ids.slice(1)).toEqual(Array.from({ length: 24 }, (_, i) => `sb-${String(23 - i).padStart(4, '0')}`));
  });

  it('failure H: a page of one holding only the pinned sandbox still continues', async () => {
    await bootstrap('main');
    await registerMany(2);
    const ids: string[] = [];
    let cursor: string | undefined;
    do {
      const res = await call(`/api/admin/sandboxes?limit=1${cursor ? `&cursor=${cursor}` : ''}`, { headers: adminHeaders() });
      const page = (await res.json()) as { sandboxes: { sandbox: string }[]; next_cursor?: string };
      expect(res.status, JSON.stringify(page)).toBe(200);
      ids.push(...page.sandboxes.map((s) => s.sandbox));
      cursor = page.next_cursor;
    } while (cursor);
    expect(ids).toEqual(['main', 'sb-0001', 'sb-0000']);
    expect(decodeCursor('x', SANDBOX_ID)).toBeUndefined();
  });

  it("failure H: the merged audit reads the Worker's own sandbox and says how many it read", async () => {
    await bootstrap('main');
    await registerMany(MANY - 1);
    const body = (await (await call('/api/admin/audit', { headers: adminHeaders() })).json()) as {
      events: { sandbox?: string; event: string }[];
      sandboxes: { included: number; total: number };
    };
    expect(body.sandboxes).toEqual({ included: 100, total: MANY });
    expect(body.events.some((e) => e.sandbox === 'main' && e.event === 'bootstrap')).toBe(true);
  }, 60_000);

  it('failure H: a secret change pushes every one of 1,003 sandboxes, in bounded batches, retrying, and logs what failed', async () => {
    await bootstrap('main');
    await registerMany(MANY - 1);
    const attempts = new Map<string, number>();
    let inFlight = 0;
    let maxInFlight = 0;
    const config = parseConfig({ ...env, ISSUER: BASE } as Record<string, unknown>);
    const { result, lines } = await captureLogs(() =>
      pushOnSecretChange(config, {
        record: async () => ({ changed: true }),
        sandboxes: (limit, cursor) => keyAuthority().sandboxPage(limit, cursor),
        sleep: async () => undefined,
        push: async (id) => {
          const n = (attempts.get(id) ?? 0) + 1;
          attempts.set(id, n);
          inFlight++;
          maxInFlight = Math.max(maxInFlight, inFlight);
          await new Promise((r) => setTimeout(r, 0));
          inFlight--;
          if (id === 'sb-0500') throw new Error('container down');
          if (id.endsWith('7') && n === 1) throw new Error('busy once');
        },
      }),
    );
    expect(attempts.size).toBe(MANY);
    expect(attempts.get('main')).toBe(1);
    expect(attempts.get('sb-0007')).toBe(2);
    expect(attempts.get('sb-0500')).toBe(PUSH_ATTEMPTS);
    expect(maxInFlight).toBeLessThanOrEqual(PUSH_CONCURRENCY);
    expect(result).toEqual({ sent: MANY - 1, failed: ['sb-0500'] });
    const failed = lines.filter((l) => l.includes('push_failed'));
    expect(failed).toHaveLength(1);
    expect(failed[0]).toContain('sb-0500');
    expect(lines.some((l) => l.includes('push_done') && l.includes(`"sandboxes":${MANY}`) && l.includes('"failed":1'))).toBe(true);
  }, 60_000);
});
