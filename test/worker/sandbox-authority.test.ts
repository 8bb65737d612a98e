import { createExecutionContext, env, listDurableObjectIds, runInDurableObject } from 'cloudflare:test';
import { beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.js';
import {
  AUDIT_MAX_EVENTS,
  appendAudit,
  countRefusal,
  ensureAuditTable,
  ensureRefusalTable,
  REFUSAL_BUCKET_MS,
  REFUSAL_MAX_ROWS,
  readAudit,
  readRefusals,
  TRIM_EVERY,
} from '../../src/issuer/audit.js';
import type { SandboxAuthority } from '../../src/issuer/sandbox-authority.js';
import { adminHeaders, BASE, call, freshStorage } from './helpers.js';
import { assertion, bootstrap, rawJws, requestToken, tokenForm } from './token-helpers.js';

beforeEach(freshStorage);

function authority(id: string): DurableObjectStub<SandboxAuthority> {
  return env.SANDBOX_AUTHORITY.get(env.SANDBOX_AUTHORITY.idFromName(id)) as DurableObjectStub<SandboxAuthority>;
}

describe('SandboxAuthority storage', () => {
  it('keeps only the public half of the bootstrap key', async () => {
    const b = await bootstrap('sb-store');
    const dump = await runInDurableObject(authority('sb-store'), (_i, s) =>
      JSON.stringify(s.storage.sql.exec('SELECT * FROM meta').toArray()),
    );
    expect(dump).toContain(b.key.x!);
    expect(dump).not.toContain(b.key.d!);
  });

  it('remembers a jti until exp + skew, then sweeps it', async () => {
    const b = await bootstrap('sb-jti');
    const jwt = await assertion(b);
    expect((await requestToken(jwt)).status).toBe(200);
    const exp = JSON.parse(atob(jwt.split('.')[1]!.replace(/-/g, '+').replace(/_/g, '/'))).exp as number;
    const rows = await runInDurableObject(authority('sb-jti'), (_i, s) =>
      s.storage.sql.exec<{ jti: string; expires_at: number }>('SELECT * FROM jti').toArray(),
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]!.expires_at).toBe((exp + 30) * 1000);
    const alarm = await runInDurableObject(authority('sb-jti'), (_i, s) => s.storage.getAlarm());
    expect(alarm).not.toBeNull();

    // An expired entry is swept by the alarm; a live one stays.
    const left = await runInDurableObject(authority('sb-jti'), async (i: SandboxAuthority, s) => {
      s.storage.sql.exec('INSERT INTO jti (jti, expires_at) VALUES (?, ?)', 'old', Date.now() - 1);
      await i.alarm();
      return s.storage.sql
        .exec<{ jti: string }>('SELECT jti FROM jti')
        .toArray()
        .map((r) => r.jti);
    });
    expect(left).toEqual([rows[0]!.jti]);
  });

  it('the audit log is bounded: oldest events go past the limit', async () => {
    const events = await runInDurableObject(authority('sb-bound'), (_i, s) => {
      ensureAuditTable(s.storage.sql);
      for (let n = 0; n < AUDIT_MAX_EVENTS + 120; n++)
        appendAudit(s.storage.sql, n, { sandbox: 'sb-bound', event: 'token_issued', outcome: 'ok', jti: `j${n}` });
      return { count: s.storage.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM audit').one().n, newest: readAudit(s.storage.sql, 3) };
    });
    expect(events.count).toBeLessThanOrEqual(AUDIT_MAX_EVENTS + 50);
    expect(events.count).toBeGreaterThanOrEqual(AUDIT_MAX_EVENTS);
    expect(events.newest.map((e) => e.jti)).toEqual([
      `j${AUDIT_MAX_EVENTS + 119}`,
      `j${AUDIT_MAX_EVENTS + 118}`,
      `j${AUDIT_MAX_EVENTS + 117}`,
    ]);
  });

  it('finding 4: made-up sandbox ids create no Durable Object and no storage, table creation included', async () => {
    const b = await bootstrap('sb-known');
    const before = (await listDurableObjectIds(env.SANDBOX_AUTHORITY)).length;
    for (let i = 0; i < 20; i++) {
      // A well-formed assertion, a junk one and an unsigned one, each naming a made-up id.
      await requestToken(await assertion({ ...b, client_id: `ghost-${i}` }));
      await requestToken(rawJws({ alg: 'none' }, { iss: `ghost-junk-${i}` }));
      await requestToken(rawJws({ alg: 'EdDSA', zip: 'DEF' }, { iss: `ghost-zip-${i}` }, 'AAAA'));
    }
    // Admin reads of an unknown id address nothing either.
    expect((await call('/api/admin/sandboxes/ghost-admin', { headers: adminHeaders() })).status).toBe(404);
    expect(await (await call('/api/admin/audit?sandbox=ghost-admin', { headers: adminHeaders() })).json()).toEqual({
      events: [],
      refusals: [],
      credentials: [{ name: 'GATEWAY_TOKEN', delivery: 'derived' }],
    });
    expect((await listDurableObjectIds(env.SANDBOX_AUTHORITY)).length).toBe(before);
  });

  it('finding 4: an authority that was never bootstrapped creates no table when asked directly', async () => {
    const tables = await runInDurableObject(authority('sb-direct'), async (i: SandboxAuthority, s) => {
      await i.authorize({ assertion: rawJws({ alg: 'EdDSA' }, { iss: 'sb-direct' }, 'AAAA'), issue: { kid: 'k', jti: 'j' } });
      await i.refuse('sb-direct', 'malformed_assertion');
      await i.status('sb-direct');
      await i.auditLog(10);
      await i.alarm();
      return s.storage.sql
        .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'")
        .toArray()
        .map((r) => r.name);
    });
    expect(tables.filter((t) => !t.startsWith('_cf_') && !t.startsWith('sqlite_'))).toEqual([]);
  });

  // Hundreds of inserts and a restart of the object every 40: seconds of work on a loaded machine.
  it('failure I: the audit bound holds across restarts of the storage object', async () => {
    await bootstrap('sb-restarts');
    // Restart the object every 40 inserts (ctx.abort() resets it), as a deploy or an eviction would.
    for (let round = 0; round < 28; round++) {
      await runInDurableObject(authority('sb-restarts'), (_i, s) => {
        for (let n = 0; n < 40; n++)
          appendAudit(s.storage.sql, Date.now(), { sandbox: 'sb-restarts', event: 'token_issued', outcome: 'ok', jti: `r${round}-${n}` });
      });
      await runInDurableObject(authority('sb-restarts'), (_i, s) => s.abort('restart')).catch(() => undefined);
    }
    const count = await runInDurableObject(
      authority('sb-restarts'),
      (_i, s) => s.storage.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM audit').one().n,
    );
    expect(count).toBeGreaterThanOrEqual(AUDIT_MAX_EVENTS);
    expect(count).toBeLessThan(AUDIT_MAX_EVENTS + TRIM_EVERY);
  }, 30_000);

  it('finding 2: a flood of unauthenticated junk naming a sandbox cannot erase its bootstrap and token_issued events', async () => {
    const b = await bootstrap('sb-flood');
    expect((await requestToken(await assertion(b))).status).toBe(200);
    const junk = [
      () => rawJws({ alg: 'EdDSA', kid: b.key.kid }, { iss: 'sb-flood', sub: 'sb-flood' }, 'AAAA'), // bad_signature
      () => rawJws({ alg: 'EdDSA', kid: 'not-the-key' }, { iss: 'sb-flood' }, 'AAAA'), // kid_mismatch
      () => rawJws({ alg: 'none' }, { iss: 'sb-flood' }), // unsupported_alg
    ];
    const FLOOD = 1100;
    // One app, as one isolate would serve the flood.
    const app = createApp();
    const send = (jwt: string) => app.fetch(new Request(`${BASE}/oauth/token`, tokenForm(jwt)), env, createExecutionContext());
    for (let i = 0; i < FLOOD; i += 50) {
      const answers = await Promise.all(Array.from({ length: 50 }, (_, j) => send(junk[(i + j) % junk.length]!())));
      expect(answers.every((r) => r.status === 401)).toBe(true);
    }
    for (const q of ['sandbox=sb-flood', 'sandbox=sb-flood&limit=500', '', 'limit=500']) {
      const listing = (await (await call(`/api/admin/audit?${q}`, { headers: adminHeaders() })).json()) as {
        events: { event: string; sandbox?: string }[];
        refusals: { sandbox: string; count: number; authenticated: boolean }[];
      };
      const mine = listing.events.filter((e) => e.sandbox === 'sb-flood').map((e) => e.event);
      expect(mine, q).toEqual(['token_issued', 'bootstrap']);
      const counted = listing.refusals.filter((r) => r.sandbox === 'sb-flood');
      expect(
        counted.reduce((n, r) => n + r.count, 0),
        q,
      ).toBe(FLOOD);
      expect(
        counted.every((r) => !r.authenticated),
        q,
      ).toBe(true);
    }
    // The flood is a handful of counter rows, not 1,100 rows.
    const rows = await runInDurableObject(
      authority('sb-flood'),
      (_i, s) => s.storage.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM refusals').one().n,
    );
    expect(rows).toBeLessThanOrEqual(2 * junk.length);
  }, 60_000);

  it('finding 2: refusal counters are bounded, oldest minute first', async () => {
    const rows = await runInDurableObject(authority('sb-counters'), (_i, s) => {
      ensureRefusalTable(s.storage.sql);
      for (let m = 0; m < REFUSAL_MAX_ROWS + 30; m++)
        countRefusal(s.storage.sql, m * REFUSAL_BUCKET_MS, { sandbox: 'sb-counters', code: 'bad_signature', authenticated: false });
      return {
        n: s.storage.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM refusals').one().n,
        newest: readRefusals(s.storage.sql, 1)[0]!,
      };
    });
    expect(rows.n).toBe(REFUSAL_MAX_ROWS);
    expect(Date.parse(rows.newest.minute)).toBe((REFUSAL_MAX_ROWS + 29) * REFUSAL_BUCKET_MS);
  });
});
